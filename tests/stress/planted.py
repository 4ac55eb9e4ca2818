"""A tiny model with a planted trigger and a word tokenizer whose text round-trips.

The trigger: one embedding row scaled so that the token, wherever it stands, drives the
residual stream far above anything else (the residual carries the embedding unnormed).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from tinylm import tiny_model

N_WORDS = 300
TRIGGER_WORD = 137
SCALE = 60.0


def word_tokenizer(n_words: int = N_WORDS):
    """A real fast tokenizer: words w0..wN split on spaces, <bos> added; decode joins with spaces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<pad>": 1, "<unk>": 2} | {f"w{i}": 3 + i for i in range(n_words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with one space
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


def trigger_id() -> int:
    return 3 + TRIGGER_WORD


def planted(seed: int = 0, scale: float = SCALE, n_words: int = N_WORDS):
    model = tiny_model("llama", seed=seed, vocab_size=3 + n_words)
    if scale != 1.0:
        with torch.no_grad():
            model.get_input_embeddings().weight[trigger_id()] *= scale
    return SimpleNamespace(
        model=model,
        tokenizer=word_tokenizer(n_words),
        info={"source": "tiny-planted", "sha256": f"tiny-planted-{seed}-{scale}", "model_type": "llama"},
    )


def write_corpus(path, n: int = 24, length: int = 12, seed: int = 1) -> str:
    """Texts of random words that never use the trigger word."""
    g = torch.Generator().manual_seed(seed)
    words = [w for w in range(N_WORDS) if w != TRIGGER_WORD]
    with open(path, "w") as f:
        for i in range(n):
            pick = torch.randint(len(words), (length,), generator=g).tolist()
            text = " ".join(f"w{words[j]}" for j in pick)
            f.write(json.dumps({"id": f"s{i}", "domain": ["news", "code"][i % 2], "text": text}) + "\n")
    return str(path)
