"""The tokens a search may use and the text it hands back.

A found sequence must be an input someone can send: real vocabulary tokens only
(no special, added or padding-row ids), the family's own BOS rule (the prefix the
tokenizer adds, as `actscope measure --bos auto` does), and text that tokenizes
back to the very same ids, so that measuring the text measures the sequence.
"""

from __future__ import annotations

import torch

from ..errors import UserError


def bos_prefix(tok) -> list[int]:
    """What the tokenizer puts before any text by default: [<bos>] for Gemma, [] for SmolLM2."""
    ids = tok("a", add_special_tokens=True)["input_ids"]
    plain = tok("a", add_special_tokens=False)["input_ids"]
    return list(ids[: len(ids) - len(plain)]) if ids[len(ids) - len(plain) :] == plain else []


def allowed_ids(tok, vocab_size: int) -> torch.Tensor:
    """(n,) int64: ids the tokenizer can produce from text and the model has a row for.

    Special and added tokens (<bos>, <pad>, Gemma's <unused...>, image tokens) are left
    out: text cannot carry them, and a sequence holding one is not an input."""
    n = min(len(tok), vocab_size)
    banned = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}) or {})
    ids = torch.tensor([i for i in range(n) if i not in banned], dtype=torch.long)
    if ids.numel() < 2:
        raise UserError(
            "the tokenizer has fewer than two ordinary tokens", "stress a model with a real vocabulary"
        )
    return ids


def decode(tok, body: list[int]) -> str:
    return tok.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def retokenize(tok, bodies: list[list[int]]) -> list[list[int]]:
    """The ids measure would see for the text of each body (BOS rule included)."""
    texts = [decode(tok, b) for b in bodies]
    return [list(x) for x in tok(texts, add_special_tokens=True)["input_ids"]]


def round_trips(tok, prefix: list[int], bodies: list[list[int]]) -> list[bool]:
    """Whether each body, decoded and tokenized again, gives prefix + body exactly."""
    if not bodies:
        return []
    return [r == prefix + b for r, b in zip(retokenize(tok, bodies), bodies, strict=True)]
