"""DB loading and the airline generator at 1x / 10x / 100x: the old path and the new one side by side.

Why: every worker process and every ``get_domain(data_dir=...)`` parses its DB once, and the seeded
generators build the built-in worlds. Parsing a big DB into pydantic models was GC-bound (the
collector walked the millions of new objects over and over) and the airline generator indexed every
flight again for each reservation (quadratic in the DB's size). This measures, in one process:

* ``retail``: the 100x retail DB (`eigendspy.domains.retail.generate_db` with 100x the default users
  and orders, written to a JSON file) parsed by the old path (``json.loads`` + ``model_validate``,
  collector on: what ``tau2_data.load_model`` did) and by the new one (`tau2_data.load_model`:
  pydantic's JSON parser under `eigendspy.core.gc_pause.gc_paused`), also with the old path's
  collector off, and all of it again in a process holding a big heap (``--heap`` live objects).
  ``young_ms`` is the young-generation collection the parse leaves behind (``gc.collect(1)`` right
  after it): the old path pays it later, the new one hands its objects to the oldest generation;
* ``airline``: the generated airline DB at each scale, written to JSON and parsed both ways, and the
  growth exponent of each path's parse time over the file size (``airline_parse_exponent``);
* ``generator``: `eigendspy.domains.airline.generate_db` at each scale and the growth exponent fitted
  to log(time) vs log(scale) (1 = linear); with ``--baseline-ref REF`` the generator as it was at git
  ``REF`` (e.g. ``4ae8859``, before this change) is timed at ``--baseline-scales`` too, and both must
  give byte-identical DBs (``same_db``).

Each parse is timed ``--repeats`` times, old and new interleaved; medians are reported, and ratios
(old / new) are what to compare on a shared machine.

Run: ``python -m benchmarks.bench_db_load [--scales 1 10 100] [--repeats 3] [--baseline-ref REF]
[--json PATH]``; results go to ``benchmarks/results/db_load.json``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eigendspy.domains import tau2_data
from eigendspy.domains.airline import generate_db as airline_db
from eigendspy.domains.airline.db import FlightDB
from eigendspy.domains.retail.db import RetailDB
from eigendspy.domains.retail.generator import generate_db as retail_db

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "db_load.json"
GENERATOR_PATH = "eigendspy/domains/airline/generator.py"


def old_load(path: Path, model: type[BaseModel]) -> BaseModel:
    """The DB parse before this change: Python's JSON parser, then validation of the dict tree."""
    return model.model_validate(json.loads(path.read_text()))


def _timed(fn: Callable[[], Any], *, collector: bool = True) -> tuple[float, float, Any]:
    """(parse ms, young-collection ms right after it, result); the collector as asked during the parse."""
    gc.collect()
    if not collector:
        gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        parsed = time.perf_counter()
    finally:
        gc.enable()
    gc.collect(1)
    young = time.perf_counter() - parsed
    return 1000 * (parsed - start), 1000 * young, result


def compare_parse(path: Path, model: type[BaseModel], repeats: int, old_without_gc: bool = False) -> dict[str, Any]:
    """Old vs new parse of one file, interleaved, medians in ms; also checks both give the same model."""
    runs: dict[str, list[tuple[float, float]]] = {"old_gc_on": [], "new": []}
    if old_without_gc:
        runs["old_gc_off"] = []
    same = True
    for _ in range(repeats):
        old_ms, old_young, old = _timed(lambda: old_load(path, model))
        new_ms, new_young, new = _timed(lambda: tau2_data.load_model(path, model))
        same = same and old == new
        runs["old_gc_on"].append((old_ms, old_young))
        runs["new"].append((new_ms, new_young))
        del old, new
        if old_without_gc:
            off_ms, off_young, _ = _timed(lambda: old_load(path, model), collector=False)
            runs["old_gc_off"].append((off_ms, off_young))
    out: dict[str, Any] = {"mb": round(path.stat().st_size / 1e6, 2), "same_model": same}
    for name, samples in runs.items():
        out[name] = {"parse_ms": round(statistics.median(s[0] for s in samples), 1),
                     "young_ms": round(statistics.median(s[1] for s in samples), 1)}
    out["ratio_old_over_new"] = round(out["old_gc_on"]["parse_ms"] / out["new"]["parse_ms"], 2)
    out["ratio_with_young"] = round((out["old_gc_on"]["parse_ms"] + out["old_gc_on"]["young_ms"])
                                    / (out["new"]["parse_ms"] + out["new"]["young_ms"]), 2)
    return out


def growth_exponent(scales: list[float], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) over log(scale): 1 is linear, 2 quadratic."""
    if len(scales) < 2:
        return None
    xs, ys = [math.log(s) for s in scales], [math.log(max(t, 1e-9)) for t in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs), 2)


def _airline_kwargs(scale: int) -> dict[str, int]:
    return {"num_users": 50 * scale, "num_flights": 60 * scale}


def _digest(db: BaseModel) -> str:
    return hashlib.sha256(db.model_dump_json().encode()).hexdigest()


def load_generator_at(ref: str) -> Callable[..., BaseModel]:
    """``generate_db`` of the airline generator as committed at git ``ref`` (imported from a temp file)."""
    source = subprocess.run(["git", "show", f"{ref}:{GENERATOR_PATH}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "airline_generator_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("airline_generator_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_db


def time_generator(generate: Callable[..., BaseModel], scale: int) -> tuple[float, BaseModel]:
    gc.collect()
    start = time.perf_counter()
    db = generate(0, **_airline_kwargs(scale))
    return time.perf_counter() - start, db


def make_heap(count: int) -> list[Any]:
    """``count`` live GC-tracked objects (small lists), the kind of heap a busy worker holds."""
    heap = [[i] for i in range(count)]
    gc.collect()
    return heap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--retail-scale", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--heap", type=int, default=2_000_000, help="live objects for the big-heap runs (0: skip)")
    parser.add_argument("--baseline-ref", default=None, help="git ref of the old airline generator to time too")
    parser.add_argument("--baseline-scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"settings": vars(args) | {"json": _shown(args.json)},
                              "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count()}}
    work = Path(tempfile.mkdtemp(prefix="bench_db_load_"))

    k = args.retail_scale
    retail_path = work / "retail.json"
    retail_path.write_text(retail_db(0, num_users=40 * k, num_products=20, num_orders=80 * k).model_dump_json())
    result["retail"] = {"scale": k, **compare_parse(retail_path, RetailDB, args.repeats, old_without_gc=True)}
    if args.heap:
        heap = make_heap(args.heap)
        result["retail_big_heap"] = {"heap_objects": args.heap,
                                     **compare_parse(retail_path, RetailDB, args.repeats, old_without_gc=True)}
        del heap
        gc.collect()
    _print_parse(f"retail {k}x", result["retail"])
    if "retail_big_heap" in result:
        _print_parse(f"retail {k}x, {args.heap:,}-object heap", result["retail_big_heap"])

    generator: dict[str, Any] = {"scales": args.scales, "new_s": [], "baseline_s": {}, "same_db": {}}
    result["airline"] = {}
    for scale in args.scales:
        seconds, db = time_generator(airline_db, scale)
        generator["new_s"].append(round(seconds, 2))
        path = work / f"airline_{scale}x.json"
        path.write_text(db.model_dump_json())
        digest = _digest(db)
        del db
        result["airline"][f"{scale}x"] = compare_parse(path, FlightDB, args.repeats)
        _print_parse(f"airline {scale}x", result["airline"][f"{scale}x"])
        print(f"airline generator {scale}x: {seconds:.2f} s (new)", flush=True)
        if args.baseline_ref and scale in args.baseline_scales:
            old_seconds, old_db = time_generator(load_generator_at(args.baseline_ref), scale)
            generator["baseline_s"][f"{scale}x"] = round(old_seconds, 2)
            generator["same_db"][f"{scale}x"] = _digest(old_db) == digest
            print(f"airline generator {scale}x: {old_seconds:.2f} s at {args.baseline_ref}, "
                  f"same DB: {generator['same_db'][f'{scale}x']}", flush=True)
    sizes = [result["airline"][f"{s}x"]["mb"] for s in args.scales]
    result["airline_parse_exponent"] = {  # over file size: 1 is linear
        path: growth_exponent(sizes, [result["airline"][f"{s}x"][path]["parse_ms"] for s in args.scales])
        for path in ("old_gc_on", "new")}
    print(f"airline parse growth exponent over MB: {result['airline_parse_exponent']}")
    generator["exponent_new"] = growth_exponent(args.scales, generator["new_s"])
    base = [(s, generator["baseline_s"][f"{s}x"]) for s in args.scales if f"{s}x" in generator["baseline_s"]]
    generator["exponent_baseline"] = growth_exponent([s for s, _ in base], [t for _, t in base])
    result["generator"] = generator
    print(f"generator growth exponent: new {generator['exponent_new']}, baseline {generator['exponent_baseline']}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it (results stay machine-independent)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def _print_parse(label: str, row: dict[str, Any]) -> None:
    parts = [f"{name} {row[name]['parse_ms']:.0f} ms (+{row[name]['young_ms']:.0f} young)"
             for name in ("old_gc_on", "old_gc_off", "new") if name in row]
    print(f"{label} ({row['mb']} MB): " + ", ".join(parts) + f"; old/new {row['ratio_old_over_new']}x, "
          f"with young collections {row['ratio_with_young']}x, same model: {row['same_model']}", flush=True)


if __name__ == "__main__":
    main()
