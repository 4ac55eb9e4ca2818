"""actscope.measure / open / Run on the real SmolLM2 135M, loaded by the test itself with transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch

import actscope
from actscope.errors import CorpusError, ModelError, RunDirError, UserError
from tinylm import TEXTS, char_tokenizer, tiny_model

pytestmark = pytest.mark.slow

TABLES = ("sites", "channels", "hist", "topk", "samples")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(actscope.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "actscope", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    """`actscope measure smollm2-135m` on the same texts, written as texts.jsonl."""
    d = tmp_path_factory.mktemp("cli")
    (d / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    res = _cli("measure", "smollm2-135m", "--corpus", "texts.jsonl", "--out", "run", "--no-progress", cwd=d)
    assert res.returncode == 0, res.stderr[-2000:]
    return d / "run"


def test_measure_in_memory_equals_cli_tables(smol_hf, cli_run):
    model, tok = smol_hf
    before = {k: v.clone() for k, v in list(model.state_dict().items())[:3]}
    model.train()  # the user's mode: restored afterwards
    run = actscope.measure(model, tok, corpus=TEXTS)
    assert run.path is None and model.training
    assert all(m.training for m in model.modules())
    assert next(model.parameters()).dtype == torch.float32
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())

    cli = actscope.open(cli_run)
    for name in TABLES:
        mine, theirs = run.table(name), cli.table(name)
        if name == "samples":  # the source column names where texts came from: a list, a file
            assert set(mine.column("source").to_pylist()) == {"texts"}
            assert set(theirs.column("source").to_pylist()) == {"texts.jsonl"}
            mine, theirs = mine.drop_columns(["source"]), theirs.drop_columns(["source"])
        assert mine.equals(theirs), name
    assert run.manifest["corpus"]["hash"] == cli.manifest["corpus"]["hash"]  # same ids, same texts
    assert run.summary["M"] == cli.summary["M"] and run.summary["location"] == cli.summary["location"]
    assert run.summary == json.loads(_cli("show", str(cli_run), "--json", cwd=cli_run).stdout) | {
        "bootstrap": run.summary["bootstrap"]
    }


def test_run_views_in_memory_and_on_disk(smol_hf, tmp_path):
    model, tok = smol_hf
    run = actscope.measure(model, tok, corpus=TEXTS[:3], sites="residual", max_length=16)
    assert run.table("sites").column("kind").unique().to_pylist() == ["residual"]
    want = [min(len(tok(t)["input_ids"]), 16) for t in TEXTS[:3]]
    assert run.table("samples").column("tokens").to_pylist() == want
    page = run.report(tmp_path / "r.html").read_text()
    assert run.summary["location"]["site"] in page and page.count("<svg") >= 3
    from actscope.report.compare import fmt_m

    assert fmt_m(run.M) in run.card() and json.loads(run.card("json"))["model"] == run.view.label
    saved = run.save(tmp_path / "saved")
    again = actscope.open(tmp_path / "saved")
    assert saved.path == again.path and again.summary == run.summary
    for name in TABLES:
        assert again.table(name).equals(run.table(name)), name
    with pytest.raises(RunDirError):
        run.save(tmp_path / "saved")  # exists: --overwrite's message
    with pytest.raises(RunDirError, match="no quant table"):
        again.table("quant")


def test_measure_out_writes_a_run_directory(tmp_path):
    model = tiny_model("llama")
    run = actscope.measure(model, char_tokenizer(), corpus=TEXTS, out=tmp_path / "run")
    assert run.path == tmp_path / "run" and (tmp_path / "run" / "run.json").is_file()
    assert actscope.open(tmp_path / "run").table("topk").equals(run.table("topk"))


def test_to_pandas_and_polars_say_how_when_missing():
    run = actscope.measure(tiny_model("llama"), char_tokenizer(), corpus=TEXTS[:2])
    for lib, fn in (("pandas", run.to_pandas), ("polars", run.to_polars)):
        try:
            __import__(lib)
        except ModuleNotFoundError:
            with pytest.raises(UserError, match=f"{lib} is not installed; pip install {lib}"):
                fn("sites")
        else:
            assert len(fn("sites")) == run.table("sites").num_rows
    assert isinstance(run.table("hist"), pa.Table)


# Bad input: the same one-line messages as the CLI, as ActscopeError subclasses.
@pytest.mark.parametrize(
    "kwargs, cli_args, err",
    [
        ({"bos": "sometimes"}, ["smollm2-135m", "--bos", "sometimes"], UserError),
        ({"max_length": 1}, ["smollm2-135m", "--max-length", "1"], UserError),
        ({"limit": 0}, ["smollm2-135m", "--limit", "0"], UserError),
        ({"corpus": "nope.jsonl"}, ["smollm2-135m", "--corpus", "nope.jsonl"], CorpusError),
        ({"model": "smollm2-13m"}, ["smollm2-13m"], ModelError),
        ({"model": "missing/dir/model"}, ["missing/dir/model"], ModelError),
    ],
)
def test_bad_input_raises_the_cli_message(kwargs, cli_args, err, tmp_path):
    with pytest.raises(err) as info:
        actscope.measure(**{"model": "smollm2-135m", "corpus": "quick", **kwargs})
    assert isinstance(info.value, actscope.ActscopeError)
    res = _cli("measure", *cli_args, "--out", "o", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"actscope: error: {info.value}"


def test_bad_input_specific_to_the_api():
    model, tok = tiny_model("llama"), char_tokenizer()
    cases = [
        (dict(max_lenght=8), "unknown option 'max_lenght'; did you mean max_length?"),
        (dict(dtype="float16"), "dtype= applies to a model source, not to a model already in memory"),
        (dict(corpus=[]), "corpus list has no samples"),
        (dict(corpus=[1, 2]), "corpus is a list, not a profile, a path or a list of strings"),
    ]
    for kw, msg in cases:
        with pytest.raises(actscope.ActscopeError, match=msg.replace("?", r"\?")):
            actscope.measure(model, tok, **{"corpus": TEXTS, **kw})
    with pytest.raises(actscope.ActscopeError, match="a model in memory needs its tokenizer"):
        actscope.measure(model, corpus=TEXTS)
    with pytest.raises(RunDirError, match="is not an actscope run directory"):
        actscope.open("/nonexistent/run")
