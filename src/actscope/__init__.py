"""actscope: measure how large the activations of an open causal LM get, and where."""

__version__ = "0.1.0"
