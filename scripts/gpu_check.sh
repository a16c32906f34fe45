#!/usr/bin/env bash
# One prepared GPU check (a lent GPU machine: Python 3.12 + torch/transformers/peft/accelerate, no network).
# The missing pure-Python / cp312 wheels travel in .whl/ (fetch them here first with scripts/fetch_gpu_wheels.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 TRL_EXPERIMENTAL_SILENCE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, peft, accelerate, trl, datasets, pydantic; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)"
python3 scripts/gpu_check.py
