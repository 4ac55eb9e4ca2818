"""Training with actscope watching: a tiny llama trained 100 steps (Trainer; 40 by hand) on the built-in corpus on the CPU.

The loss curve must be the very same with and without measuring (same seed); the model
has dropout, so a measurement that left eval mode on, or drew random numbers, would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import actscope
from actscope.corpus import load_corpus
from actscope.integrations import TrainerCallback
from actscope.limits import FP8_E4M3_MAX, FP16_MAX
from tinylm import TEXTS, char_tokenizer, tiny_model

STEPS, EVERY, SEQ, BATCH = 100, 25, 32, 4
LOOP_STEPS, LOOP_EVERY = 40, 10  # the hand-written loop: shorter, the Trainer test runs 100


def _chunks(tok) -> list[torch.Tensor]:
    """(SEQ,) id windows of the quick corpus, in corpus order."""
    ids = []
    for s in load_corpus("quick").samples[:60]:
        ids += tok(s.text.encode("ascii", "ignore").decode())["input_ids"]
    return [torch.tensor(ids[i : i + SEQ]) for i in range(0, len(ids) - SEQ, SEQ)]


def _model():
    return tiny_model("llama", seed=0, attention_dropout=0.1).train().requires_grad_(True)


def _loop(monitor_out: Path | None) -> tuple[list[float], actscope.Monitor | None]:
    """A hand-written training loop; with a Monitor when monitor_out is given."""
    tok = char_tokenizer()
    data = _chunks(tok)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mon = None
    if monitor_out is not None:
        mon = actscope.Monitor(model, every=LOOP_EVERY, probe=TEXTS, tokenizer=tok, out=monitor_out)
    torch.manual_seed(1)
    losses = []
    for step in range(LOOP_STEPS + 1):
        if mon is not None:
            mon.step(step)
        if step == LOOP_STEPS:
            break
        idx = torch.randint(len(data), (BATCH,))  # draws from the RNG a measurement must not touch
        x = torch.stack([data[i] for i in idx.tolist()])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, mon


def test_monitor_in_a_hand_written_loop_keeps_the_loss_curve(tmp_path):
    plain, _ = _loop(None)
    watched, mon = _loop(tmp_path / "series")
    assert plain == watched  # exactly: same seed, same draws, same modes
    assert plain[-1] < plain[0] * 0.8  # it did learn something
    steps = [p["step"] for p in mon.series]
    assert steps == list(range(0, LOOP_STEPS + 1, LOOP_EVERY))
    lines = [json.loads(x) for x in (tmp_path / "series" / "series.jsonl").read_text().splitlines()]
    assert lines == json.loads(json.dumps(mon.series))
    for p in mon.series:
        run = actscope.open(tmp_path / "series" / f"step-{p['step']:08d}")
        assert run.manifest["training"] == {"step": p["step"]}
        assert p["M"] == run.M == max(p["kinds"].values())
        assert p["kinds"] == run.kind_maxima() and {"residual", "mlp", "attention"} <= set(p["kinds"])
        assert p["fp16_headroom"] == FP16_MAX / p["M"] and p["fp8_e4m3_headroom"] == FP8_E4M3_MAX / p["M"]
    # Training moved the activations: the series is not one point repeated.
    assert len({p["M"] for p in mon.series}) == len(mon.series)

    # `actscope compare --trend` on the series directory: the table and the SVG chart.
    env = {**os.environ, "PYTHONPATH": str(Path(actscope.__file__).parents[1])}
    res = subprocess.run(
        [sys.executable, "-m", "actscope", "compare", "--trend", str(tmp_path / "series"),
         "--chart", str(tmp_path / "trend.svg"), "--format", "csv"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = res.stdout.strip().splitlines()
    assert rows[0].startswith("x,model,M,M_embedding") and len(rows) == 1 + len(mon.series)
    assert [float(r.split(",")[2]) for r in rows[1:]] == [p["M"] for p in mon.series]
    svg = (tmp_path / "trend.svg").read_text()
    assert svg.startswith("<svg") and "training step" in svg and "residual" in svg
    assert svg.count("<path") > 8  # a line per kind

    from actscope.report.html import render_report

    runs = sorted((tmp_path / "series").glob("step-*"))
    page = render_report(runs, tmp_path / "report.html").read_text()
    assert "max |a| per site kind by training step" in page


@pytest.mark.slow
def test_trainer_callback_logs_and_keeps_the_loss_curve(tmp_path):
    from transformers import Trainer, TrainingArguments

    tok = char_tokenizer()
    data = [{"input_ids": x, "labels": x} for x in _chunks(tok)]

    def train(callbacks):
        args = TrainingArguments(
            output_dir=str(tmp_path / "trainer"), max_steps=STEPS, per_device_train_batch_size=BATCH,
            learning_rate=3e-3, logging_steps=1, report_to=[], save_strategy="no", seed=0,
            use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        )  # fmt: skip
        trainer = Trainer(model=_model(), args=args, train_dataset=data, callbacks=callbacks)
        trainer.train()
        return trainer.state.log_history

    plain = train([])
    watched = train([TrainerCallback(every=EVERY, probe=TEXTS, tokenizer=tok, out=tmp_path / "series")])
    loss = lambda h: [(e["step"], e["loss"]) for e in h if "loss" in e]  # noqa: E731
    assert loss(plain) == loss(watched) and len(loss(plain)) == STEPS
    logged = [e for e in watched if "actscope/M" in e]
    assert [e["step"] for e in logged] == list(range(0, STEPS + 1, EVERY))
    for e in logged:
        assert e["actscope/fp16_headroom"] == FP16_MAX / e["actscope/M"]
        assert e["actscope/M"] == max(v for k, v in e.items() if k.startswith("actscope/M/"))
    assert len(list((tmp_path / "series").glob("step-*"))) == len(logged)


def test_monitor_bad_input():
    with pytest.raises(actscope.ActscopeError, match="every=0 must be a positive number of steps"):
        actscope.Monitor(_model(), every=0, probe=TEXTS)
    with pytest.raises(actscope.ActscopeError, match="needs probe texts"):
        TrainerCallback(every=10)
