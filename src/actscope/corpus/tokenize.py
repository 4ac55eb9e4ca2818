"""Family-specific tokenization: each model's own tokenizer and special tokens.

`bos="auto"` keeps what the tokenizer adds by default (Gemma adds <bos>;
SmolLM2 adds none); "always" makes sure the sequence starts with the BOS token;
"never" removes a leading BOS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import UserError
from .types import Corpus

log = logging.getLogger(__name__)

BOS_POLICIES = ("auto", "always", "never")
CONTEXT_ATTR = "actscope_context_length"  # set on a tokenizer by models.load_model


@dataclass(frozen=True)
class TokenizeConfig:
    bos: str = "auto"
    max_length: int = 2048
    overflow: str = "truncate"  # or "window": split into consecutive windows, every token once
    chat_template: bool = False  # wrap each sample as a user turn with the tokenizer's chat template

    def __post_init__(self):
        if self.bos not in BOS_POLICIES:
            raise UserError(f"invalid --bos {self.bos!r}", f"choose one of {', '.join(BOS_POLICIES)}")
        if self.max_length < 2:
            raise UserError(f"--max-length {self.max_length} is below 2", "give --max-length 2 or more")
        if self.overflow not in ("truncate", "window"):
            raise UserError(f"invalid overflow policy {self.overflow!r}", "choose truncate or window")


@dataclass(frozen=True)
class Sequence:
    sample: int  # index of the sample in the corpus
    offset: int  # position of ids[0] within the sample's token stream (windows)
    ids: tuple[int, ...]


def tokenize_corpus(corpus: Corpus, tokenizer, cfg: TokenizeConfig) -> list[Sequence]:
    bos_id = tokenizer.bos_token_id
    if cfg.bos == "always" and bos_id is None:
        raise UserError("--bos always, but this tokenizer has no BOS token", "use --bos auto or never")
    if cfg.chat_template:
        _chat_ids(tokenizer, "")  # fails early and once if there is no template
    _warn_beyond_context(tokenizer, cfg.max_length)
    texts = [s.text for s in corpus.samples]
    # Truncation measures max_length tokens per sample (+1 for a BOS that "always" may add):
    # tokenize only as much text as yields them, not a whole 50 MB document.
    need = None if cfg.overflow == "window" else cfg.max_length + 1
    enc = encode_prefixes(tokenizer, texts, need, cfg.chat_template)
    out: list[Sequence] = []
    for i, ids in enumerate(enc):
        ids = list(ids)
        if cfg.bos == "always" and (not ids or ids[0] != bos_id):
            ids.insert(0, bos_id)
        elif cfg.bos == "never" and ids and bos_id is not None and ids[0] == bos_id:
            ids = ids[1:]
        if not ids:
            continue
        if cfg.overflow == "truncate" or len(ids) <= cfg.max_length:
            out.append(Sequence(i, 0, tuple(ids[: cfg.max_length])))
        else:
            for start in range(0, len(ids), cfg.max_length):
                out.append(Sequence(i, start, tuple(ids[start : start + cfg.max_length])))
    return out


def encode_prefixes(tokenizer, texts: list[str], n_tokens: int | None, chat: bool = False) -> list[list[int]]:
    """Token ids of each text, of which at least the first `n_tokens` (all when None) are
    exactly those of the whole text.

    A text is tokenized from a character prefix that grows (x2) until it yields n_tokens
    plus a margin: cutting the text changes only the last few tokens before the cut, and
    the margin keeps those out of the first n_tokens. Texts are tokenized in batches, as
    one batch when every prefix suffices (the common case: short samples).
    """
    encode = (
        (lambda ts: [_chat_ids(tokenizer, t) for t in ts])
        if chat
        else (lambda ts: tokenizer(ts, add_special_tokens=True)["input_ids"])
    )
    if n_tokens is None:
        return [list(ids) for ids in encode(texts)]
    out: list[list[int]] = [[] for _ in texts]
    chars = (n_tokens + _MARGIN_TOKENS) * _CHARS_PER_TOKEN
    todo = list(range(len(texts)))
    while todo:
        for i, ids in zip(todo, encode([texts[i][:chars] for i in todo]), strict=True):
            out[i] = list(ids)
        todo = [i for i in todo if len(texts[i]) > chars and len(out[i]) < n_tokens + _MARGIN_TOKENS]
        chars *= 2
    return out


_CHARS_PER_TOKEN = 8  # a first guess (English BPE: ~4); a longer prefix is tried when short
_MARGIN_TOKENS = 64  # tokens past the kept ones: the cut, and a chat template's closing turn


def _warn_beyond_context(tokenizer, max_length: int) -> None:
    """Positions past the model's context are extrapolation: activations there are not the
    model's in use. load_model puts the config's context length on the tokenizer (not as
    model_max_length, which would make transformers warn about every longer text, windows too)."""
    context = getattr(tokenizer, CONTEXT_ATTR, None) or getattr(tokenizer, "model_max_length", None)
    if isinstance(context, int) and 0 < context < 10**9 and max_length > context:
        log.warning(
            "--max-length %d exceeds the model's context of %d tokens; positions past %d are "
            "outside what it was trained for",
            max_length,
            context,
            context,
        )


def _chat_ids(tokenizer, text: str) -> list[int]:
    """The sample as one user turn; the template adds the family's own special tokens."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            "--chat-template given, but this tokenizer has no chat template", "drop --chat-template"
        )
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=True, add_generation_prompt=False
    )
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
