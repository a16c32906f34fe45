"""Self-evolution: DSPy optimizers compile every role against checker-pass metrics."""
