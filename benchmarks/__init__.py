"""Side-by-side ratio benchmarks (run as ``python -m benchmarks.<name>``; not timed tests)."""
