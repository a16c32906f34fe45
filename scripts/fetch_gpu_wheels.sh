#!/usr/bin/env bash
# Fetch the wheels scripts/gpu_check.sh installs on the GPU machine (cp312 / pure Python, no deps resolved).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pyarrow==26.0.1 trl==1.16.0 datasets==5.2.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
  typing-inspection==0.4.5 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0
du -sh .whl
