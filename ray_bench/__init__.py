"""ray-bench: measure social bias in LLMs and how post-training quantization changes it.

Importing this package is cheap: torch, transformers, vLLM and Ray are imported only
inside the functions that need them.
"""

from ray_bench.errors import RayBenchError

__version__ = "0.1.0"

__all__ = ["RayBenchError", "__version__"]
