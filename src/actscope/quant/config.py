"""QuantConfig: everything `actscope quant` takes; the CLI builds its flags from it."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelOptions
from ..errors import UserError
from .recommend import Budget
from .scheme import DEFAULT_E2E, DEFAULT_SCHEMES, parse_scheme


@dataclass(frozen=True)
class QuantConfig(ModelOptions):
    target: str = "gemma-3-270m"  # run directory (has run.json) or model source
    corpus: str | None = None  # default: the run's corpus, else "quick"
    out: str | None = None  # model targets: run directory to write (default runs/<model>-<corpus>)
    calib: int = 32  # calibration samples
    eval: int = 32  # held-out evaluation samples
    seed: int = 0
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    e2e: tuple[str, ...] = DEFAULT_E2E  # schemes also run end to end; () skips
    sites: str = "residual,linear_input"
    max_length: int = 512
    bos: str = "auto"
    token_budget: int = 4096  # padded tokens per batch, statistics passes
    e2e_token_budget: int = 512  # padded tokens per batch end to end (logits are B x S x vocab)
    budget: Budget = Budget()
    recommend: bool = True
    # KV-cache schemes FORMAT:GRANULARITY (kvcache.py), static scales from the run's key/value sites
    kv: tuple[str, ...] = ()

    def __post_init__(self):
        for spec in (*self.schemes, *self.e2e):
            parse_scheme(spec)  # raises a UserError naming the bad scheme
        for spec in self.kv:
            from .kvcache import parse_kv_scheme

            parse_kv_scheme(spec)
        if not self.schemes:
            raise UserError(
                "no quantization scheme given", "pass --schemes int8:tensor:absmax,... or leave the default"
            )
        if self.max_length < 2:
            raise UserError(f"--max-length {self.max_length} is below 2", "give --max-length 2 or more")
        for flag, v in (("--token-budget", self.token_budget), ("--e2e-token-budget", self.e2e_token_budget)):
            if v < self.max_length:
                raise UserError(
                    f"{flag} {v} is below --max-length {self.max_length}",
                    "raise the budget or lower --max-length",
                )
        b = self.budget
        if not 0.0 <= b.max_keep_fraction <= 1.0:
            raise UserError(f"--max-keep {b.max_keep_fraction} is not a fraction", "give a value in [0, 1]")
        if b.max_checks < 1:
            raise UserError(f"--max-checks {b.max_checks} must be at least 1", "give a positive number")

    def scheme_list(self) -> list[str]:
        """Evaluation schemes, with every end-to-end scheme included once, in order."""
        names = [parse_scheme(s).name for s in self.schemes]
        for s in self.e2e:
            n = parse_scheme(s).name
            if n not in names:
                names.append(n)
        return names
