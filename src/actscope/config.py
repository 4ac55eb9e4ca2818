"""Frozen configuration dataclasses; the CLI builds its flags from these."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UserError


@dataclass(frozen=True)
class ModelOptions:
    """How a model source is loaded (engine.MODEL_FIELDS): every config that loads one has these."""

    dtype: str | None = None  # float32 | bfloat16 | float16; default per device
    device: str | None = None
    cache_dir: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    device_map: str | None = None
    max_memory: dict | None = field(default=None, hash=False)


@dataclass(frozen=True)
class MeasureConfig(ModelOptions):
    model: str = "gemma-3-270m"
    corpus: str = "quick"
    out: str | None = None  # run directory; default runs/<model>-<corpus>
    sites: str | None = None  # kinds, presets or globs (sites.select_sites)
    max_length: int = 2048
    overflow: str = "truncate"  # or "window"
    bos: str = "auto"
    chat_template: bool = False
    limit: int | None = None  # measure only the first N samples
    token_budget: int = 8192  # padded tokens per batch
    max_batch: int = 32
    overwrite: bool = False
    resume: bool = False
    checkpoint_every: int = 20  # batches between accumulator checkpoints
    shard: tuple[int, int] | None = None  # (i, N): measure the i-th of N deterministic slices
    download: bool = False  # fetch a Hub id's safetensors and tokenizer (models/hub.py)
    revision: str | None = None  # Hub branch, tag or commit; pinned to its commit
    progress: bool = True

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit} must be at least 1", "give a positive number of samples")
        if self.max_length < 2:
            raise UserError(f"--max-length {self.max_length} is below 2", "give --max-length 2 or more")
        if self.token_budget < self.max_length:
            raise UserError(
                f"--token-budget {self.token_budget} is below --max-length {self.max_length}",
                "raise the budget or lower the max length",
            )
        if self.max_batch < 1:
            raise UserError(f"--max-batch {self.max_batch} must be at least 1", "give a positive batch size")
        if self.checkpoint_every < 1:
            raise UserError(
                f"--checkpoint-every {self.checkpoint_every} must be at least 1", "give a positive number"
            )
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise UserError(f"--shard {i}/{n} is out of range", "use I/N with 0 <= I < N")
