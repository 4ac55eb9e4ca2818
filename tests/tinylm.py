"""Tiny real building blocks for tests: a character tokenizer, random-initialised
models, a small multi-domain corpus. Imported as `from tinylm import ...`."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from actscope.corpus import Corpus, Sample


def char_tokenizer():
    """A real fast tokenizer over printable ASCII characters, adding <bos> by default."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(i): i - 32 for i in range(32, 127)}
    vocab.update({"<bos>": 95, "<pad>": 96, "<unk>": 97})
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 95)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_model(model_type: str = "llama", seed: int = 0, **overrides):
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    if model_type.startswith("gemma"):
        kw["head_dim"] = 16
    kw.update(overrides)
    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(model_type, **kw)
    return AutoModelForCausalLM.from_config(cfg).eval()


def tiny_loaded(model_type: str = "llama", **kw):
    """A LoadedModel-like bundle for measure(loaded=...)."""
    return SimpleNamespace(
        model=tiny_model(model_type, **kw),
        tokenizer=char_tokenizer(),
        info={"source": f"tiny-{model_type}", "sha256": f"tiny-{model_type}", "model_type": model_type},
    )


TEXTS = [
    "The cat sat on the mat.",
    "def f(x):\n    return x * 2\n",
    "Article 1. All human beings are born free and equal in dignity and rights.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little money.",
    "x^2 + y^2 = z^2 holds for right triangles; 3, 4, 5 is the smallest example.",
    "Q: How do I sort a list? A: use sorted(xs) or xs.sort().",
    "Bonjour tout le monde, ceci est un petit texte.",
    "The committee met on Tuesday to discuss the budget for next year.",
]


def tiny_corpus(n: int = 8) -> Corpus:
    domains = ["news", "code", "legal", "fiction", "math", "dialogue", "multilingual", "news"]
    return Corpus(
        "tiny",
        tuple(Sample(f"t{i}", domains[i % len(domains)], "tests", TEXTS[i % len(TEXTS)]) for i in range(n)),
    )
