"""Model loading: built-in names, GGUF files, Hugging Face directories and cache.

Usage: `load_model("gemma-3-270m")` -> LoadedModel(model, tokenizer, info).
"""

from .load import LoadedModel, load_model, load_tokenizer, resolve_device, resolve_dtype, tokenizer_info
from .resolve import ResolvedSource, resolve_source
from .zoo import ZOO, ZooEntry

__all__ = [
    "ZOO",
    "LoadedModel",
    "ResolvedSource",
    "ZooEntry",
    "load_model",
    "load_tokenizer",
    "resolve_device",
    "resolve_dtype",
    "resolve_source",
    "tokenizer_info",
]
