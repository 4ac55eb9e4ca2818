"""Scale out and never lose work: shards + merge, torchrun, resume after SIGKILL, offload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import torch

from actscope.config import MeasureConfig
from actscope.merge import merge_runs
from actscope.runner import measure
from tinylm import TEXTS, char_tokenizer, tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random llama saved as a Hugging Face directory with a real tokenizer."""
    d = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", seed=3).save_pretrained(d)
    char_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "c.jsonl"
    lines = [
        json.dumps({"text": t * (1 + i % 3), "domain": f"d{i % 3}", "id": f"s{i}"})
        for i, t in enumerate(TEXTS * 3)
    ]
    p.write_text("\n".join(lines) + "\n")
    return p


def tables(run):
    out = {
        t: pq.read_table(run / f"{t}.parquet").to_pylist()
        for t in ("sites", "channels", "hist", "topk", "samples")
    }
    out["summary"] = json.loads((run / "run.json").read_text())["summary"]
    return out


SUM_COLUMNS = {"mean", "std", "rms", "kurtosis", "sum_sq"}


def assert_same_run(a, b, rel=1e-9):
    """Exact equality except float sums (global moments to `rel`, per-channel sums
    to float64 rounding of identical float32 batch partials)."""
    ta, tb = tables(a), tables(b)
    for name in ("sites", "channels", "hist", "topk", "samples"):
        assert len(ta[name]) == len(tb[name]), name
        for ra, rb in zip(ta[name], tb[name]):
            for k, va in ra.items():
                vb = rb[k]
                if k in SUM_COLUMNS and va is not None:
                    assert va == pytest.approx(vb, rel=rel, abs=1e-12), (name, k)
                else:
                    assert va == vb, (name, ra.get("site"), k, va, vb)
    sa, sb = ta["summary"], tb["summary"]
    assert (sa["M"], sa["location"]) == (sb["M"], sb["location"])


def run_cli(*args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "actscope", *args],
        capture_output=True,
        text=True,
        env=env or os.environ,
        timeout=900,
        **kw,
    )


def test_shards_merge_equal_the_whole(tmp_path, model_dir, corpus_file):
    base = dict(model=str(model_dir), corpus=str(corpus_file), progress=False, max_batch=4, token_budget=4096)
    whole = measure(MeasureConfig(out=str(tmp_path / "whole"), **base))
    shards = [measure(MeasureConfig(out=str(tmp_path / f"s{i}"), shard=(i, 3), **base)) for i in range(3)]
    merged = merge_runs(shards, tmp_path / "merged")
    assert_same_run(whole, merged)
    man = json.loads((merged / "run.json").read_text())
    assert (
        man["shards_merged"] == "3 of 3"
        and man["tokens"]["measured"] == json.loads((whole / "run.json").read_text())["tokens"]["measured"]
    )


def test_merge_refuses_runs_of_different_models(tmp_path, model_dir, corpus_file):
    from actscope.errors import RunDirError

    other = tmp_path / "other-model"
    tiny_model("llama", seed=4).save_pretrained(other)
    char_tokenizer().save_pretrained(other)
    base = dict(corpus=str(corpus_file), progress=False, max_batch=4)  # several batches: every shard gets one
    a = measure(MeasureConfig(model=str(model_dir), out=str(tmp_path / "a"), shard=(0, 2), **base))
    b = measure(MeasureConfig(model=str(other), out=str(tmp_path / "b"), shard=(1, 2), **base))
    with pytest.raises(RunDirError, match="different models"):
        merge_runs([a, b], tmp_path / "m")
    c = measure(
        MeasureConfig(model=str(model_dir), out=str(tmp_path / "c"), shard=(1, 2), dtype="bfloat16", **base)
    )
    with pytest.raises(RunDirError, match="different dtypes"):
        merge_runs([a, c], tmp_path / "m")


def test_a_shard_without_a_batch_is_refused(tmp_path, model_dir, corpus_file):
    """The whole corpus fits one batch: shard 1/2 would measure nothing and look complete (issue 15.5)."""
    from actscope.errors import UserError

    with pytest.raises(UserError, match="shard 1/2 gets no batch"):
        measure(
            MeasureConfig(
                model=str(model_dir),
                corpus=str(corpus_file),
                out=str(tmp_path / "s"),
                shard=(1, 2),
                progress=False,
            )
        )
    assert not (tmp_path / "s" / "run.json").exists()


def test_torchrun_two_processes_equal_one(tmp_path, model_dir, corpus_file):
    args = ["measure", str(model_dir), "--corpus", str(corpus_file), "--max-batch", "4", "--no-progress"]
    one = run_cli(*args, "-o", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
         "-m", "actscope", *args, "-o", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    man = json.loads((tmp_path / "two" / "run.json").read_text())
    assert man["world_size"] == 2
    assert_same_run(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, smollm):
    """A real model, killed with SIGKILL at a random batch, resumed: same results."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"text": t * 4, "id": f"s{i}"}) for i, t in enumerate(TEXTS * 2)) + "\n"
    )
    args = ["measure", "smollm2-135m", "--corpus", str(corpus), "--max-batch", "1", "--checkpoint-every", "1",
            "--sites", "residual,mlp,linear_input", "--no-progress"]  # fmt: skip
    full = run_cli(*args, "-o", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "actscope", *args, "-o", str(out)], stderr=subprocess.PIPE, text=True
    )
    state = out / "state" / "accumulators.safetensors"
    deadline = time.time() + 600
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3 * torch.rand(1).item())  # a random later batch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    man = json.loads((out / "run.json").read_text())
    assert man["status"] == "running"  # nothing that looks complete was left
    assert not (out / "sites.parquet").exists()

    resumed = run_cli(*args, "-o", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(tmp_path / "full", out)


def test_sigterm_checkpoints_and_marks_interrupted(tmp_path, model_dir, corpus_file):
    from actscope.errors import Interrupted
    from actscope.runner import _StopOnSignal

    def cfg(out, **kw):
        return MeasureConfig(
            model=str(model_dir),
            corpus=str(corpus_file),
            out=str(tmp_path / out),
            max_batch=2,
            progress=False,
            **kw,
        )

    # The signal arrives during the first batch; the loop stops after it with a checkpoint.
    original = _StopOnSignal.__enter__

    def enter(self):
        original(self)
        self.signum = signal.SIGTERM
        return self

    _StopOnSignal.__enter__ = enter
    try:
        with pytest.raises(Interrupted, match="--resume"):
            measure(cfg("r"))
    finally:
        _StopOnSignal.__enter__ = original
    man = json.loads((tmp_path / "r" / "run.json").read_text())
    assert man["status"] == "interrupted"
    done = measure(cfg("r", resume=True))
    whole = measure(cfg("w"))
    assert_same_run(whole, done)


def test_resume_refuses_a_mismatched_checkpoint(tmp_path, model_dir, corpus_file):
    from actscope.errors import RunDirError

    base = dict(model=str(model_dir), corpus=str(corpus_file), out=str(tmp_path / "r"), progress=False)
    measure(MeasureConfig(**base))
    with pytest.raises(RunDirError, match="another model, corpus, settings"):
        measure(MeasureConfig(**base, resume=True, max_length=64))


def test_resume_refuses_a_corrupt_checkpoint(tmp_path, model_dir, corpus_file):
    from actscope.errors import RunDirError

    base = dict(model=str(model_dir), corpus=str(corpus_file), out=str(tmp_path / "r"), progress=False)
    out = measure(MeasureConfig(**base))
    (out / "state" / "accumulators.safetensors").write_bytes(b"garbage")
    with pytest.raises(RunDirError, match="corrupt"):
        measure(MeasureConfig(**base, resume=True))


def test_forced_offload_equals_in_memory(tmp_path, model_dir, corpus_file):
    """device_map=auto with a tiny CPU budget puts layers on disk; hooks still see every site once."""
    base = dict(model=str(model_dir), corpus=str(corpus_file), progress=False, max_batch=4)
    ref = measure(MeasureConfig(out=str(tmp_path / "mem"), **base))
    off = measure(
        MeasureConfig(out=str(tmp_path / "off"), device_map="auto", max_memory={"cpu": "150KB"}, **base)
    )
    man = json.loads((off / "run.json").read_text())
    assert "disk" in man["model"]["device_map"].values()
    assert_same_run(ref, off)


def test_quant_takes_the_device_map(tmp_path, model_dir, corpus_file):
    """`actscope quant --device-map auto --max-memory ...` loads through the same engine as measure:
    with layers offloaded to disk the per-site SQNR equals the in-memory run's."""
    from actscope.quant.config import QuantConfig
    from actscope.quant.pipeline import run_quant

    base = dict(
        target=str(model_dir), corpus=str(corpus_file), calib=4, eval=4, e2e=(), recommend=False,
        schemes=("int8:tensor:absmax", "fp8_e4m3:tensor:absmax"), max_length=64, token_budget=256,
    )  # fmt: skip
    _, mem = run_quant(QuantConfig(out=str(tmp_path / "qmem"), **base))
    out, off = run_quant(
        QuantConfig(out=str(tmp_path / "qoff"), device_map="auto", max_memory={"cpu": "150KB"}, **base)
    )
    man = json.loads((out / "run.json").read_text())
    assert "disk" in man["model"]["device_map"].values()
    a = pq.read_table(tmp_path / "qmem" / "quant.parquet").to_pylist()
    b = pq.read_table(out / "quant.parquet").to_pylist()
    assert [(r["site"], r["scheme"], r["sqnr_db"]) for r in a] == [
        (r["site"], r["scheme"], r["sqnr_db"]) for r in b
    ]
    assert mem["schemes"].keys() == off["schemes"].keys()
