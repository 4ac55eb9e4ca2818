"""Family-specific tokenization: each model's own tokenizer and special tokens.

`bos="auto"` keeps what the tokenizer adds by default (Gemma adds <bos>;
SmolLM2 adds none); "always" makes sure the sequence starts with the BOS token;
"never" removes a leading BOS.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from .sources import Corpus

BOS_POLICIES = ("auto", "always", "never")


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
        enc = [_chat_ids(tokenizer, s.text) for s in corpus.samples]
    else:
        enc = tokenizer([s.text for s in corpus.samples], add_special_tokens=True)["input_ids"]
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
