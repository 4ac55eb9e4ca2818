"""Training: measure a fixed probe set every N steps, log M per kind and the fp16 / FP8 headroom.

    monitor = actscope.Monitor(model, every=50, probe=texts, tokenizer=tok, out="runs/series")
    for step, batch in enumerate(loader):
        monitor.step(step)                   # measures when step % every == 0
        ...                                  # the training step, unchanged

    trainer = Trainer(..., callbacks=[TrainerCallback(every=50, probe=texts)])

Each measurement is actscope.measure on the model as it is: eval mode under
inference_mode, no gradients, then every module's mode and the RNG states as they
were, so the loss curve is the same with and without the monitor. With `out=`,
each measurement is a run directory out/step-NNNNNNNN (its run.json records the
step) and a line of out/series.jsonl; `actscope compare --trend out` plots them.
"""

from __future__ import annotations

import json
from pathlib import Path

import transformers

from .errors import UserError
from .report.compare import SERIES, trend_point

PREFIX = "actscope/"  # the trainer-log keys: actscope/M, actscope/M/residual, actscope/fp16_headroom ...


class Monitor:
    """Measure `probe` with `model` every `every` steps; `series` holds one point per measurement."""

    def __init__(
        self, model, every: int = 100, probe=None, tokenizer=None, *, sites=None, out=None, **options
    ):
        if not isinstance(every, int) or every < 1:
            raise UserError(f"every={every!r} must be a positive number of steps", "give e.g. every=100")
        if probe is None:
            raise UserError("a Monitor needs probe texts", "pass probe=[...] (a fixed list of strings)")
        self.model, self.every, self.probe, self.tokenizer = model, every, probe, tokenizer
        self.sites, self.options = sites, options
        self.out = Path(out) if out is not None else None
        self.series: list[dict] = []

    def step(self, step: int, *, force: bool = False) -> dict | None:
        """Measure at this step when it is a multiple of `every` (or `force`); the new point."""
        if step % self.every and not force:
            return None
        from .api import measure

        run = measure(self.model, self.tokenizer, corpus=self.probe, sites=self.sites, **self.options)
        run.manifest["training"] = {"step": step}
        if self.out is not None:
            run.save(self.out / f"step-{step:08d}", overwrite=True)
        point = {"step": step, **trend_point(run.view)}
        self.series.append(point)
        if self.out is not None:
            with (self.out / SERIES).open("a", encoding="utf-8") as f:
                f.write(json.dumps(point) + "\n")
        return point


def log_entry(point: dict) -> dict:
    """A series point as flat trainer-log keys (floats only, as loggers want them)."""
    out = {f"{PREFIX}M": point["M"]}
    out.update({f"{PREFIX}M/{kind}": v for kind, v in point["kinds"].items()})
    out[f"{PREFIX}fp16_headroom"] = point["fp16_headroom"]
    out[f"{PREFIX}fp8_e4m3_headroom"] = point["fp8_e4m3_headroom"]
    return out


class TrainerCallback(transformers.TrainerCallback):
    """A transformers Trainer callback: a Monitor on the trained model, measured at step 0 and
    every `every` optimizer steps on the main process; each point joins state.log_history
    (saved in trainer_state.json) as actscope/... keys with its step."""

    def __init__(self, every: int = 100, probe=None, tokenizer=None, *, sites=None, out=None, **options):
        Monitor(None, every, probe)  # the same checks, now rather than at the first step
        self.every, self.probe, self.tokenizer = every, probe, tokenizer
        self.sites, self.out, self.options = sites, out, options
        self.monitor: Monitor | None = None

    def _measure(self, state, model, processing_class) -> None:
        if not state.is_world_process_zero:
            return
        if self.monitor is None:
            tok = self.tokenizer if self.tokenizer is not None else processing_class
            self.monitor = Monitor(
                model, self.every, self.probe, tok, sites=self.sites, out=self.out, **self.options
            )
        point = self.monitor.step(state.global_step)
        if point is not None:
            state.log_history.append({**log_entry(point), "step": state.global_step})

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._measure(state, model, processing_class)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._measure(state, model, processing_class)
