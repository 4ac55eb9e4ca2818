"""actscope stress: bad input gets one line and exit 2; --resume continues to the same result."""

from __future__ import annotations

import json

import pytest
from planted import planted, word_tokenizer, write_corpus

from actscope.cli import main
from actscope.errors import RunDirError
from actscope.stress import StressConfig, run_stress


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A planted model directory and a measured corpus run of it (once for the module)."""
    d = tmp_path_factory.mktemp("stress-cli")
    loaded = planted()
    loaded.model.save_pretrained(d / "model")
    word_tokenizer().save_pretrained(d / "model")
    corpus = write_corpus(d / "c.jsonl")
    assert main(["measure", str(d / "model"), "--corpus", corpus, "-o", str(d / "run"), "--no-progress"]) == 0
    return d


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kinds", "residual,bogus"], "unknown site kind 'bogus'"),
        (["--sites", "layers.*.nothing.out"], "matches no site"),
        (["--budget", "0"], "--budget 0 must be at least 1"),
        (["--budget", "40"], "--budget 40 leaves"),
        (["--length", "1"], "--length 1 is out of range"),
        (["--resume"], "holds no stress search"),
    ],
)
def test_bad_input_is_one_line_exit_2(setup, tmp_path, capsys, extra, message):
    args = ["stress", str(setup / "model"), "--from", str(setup / "run"), "-o", str(tmp_path / "s")]
    assert main([*args, "--length", "8", "--no-progress", *extra]) == 2
    # transformers' own "Loading weights" bar may precede it; nothing else, no traceback
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip() and "Loading weights" not in x]
    assert len(lines) == 1 and lines[0].startswith("actscope: error:") and message in lines[0], lines


def test_existing_out_needs_overwrite(setup, tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    args = ["stress", str(setup / "model"), "--from", str(setup / "run"), "-o", str(tmp_path / "s")]
    assert main([*args, "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--no-progress", "--overwrite"]) == 2  # not a stress output: kept
    assert "is not a stress output" in capsys.readouterr().err
    assert (tmp_path / "s" / "notes.txt").read_text() == "mine"


def _cfg(setup, out, **kw):
    kw = {"length": 6, "batch": 8, "kinds": ("residual", "mlp"), "progress": False} | kw
    return StressConfig(model="tiny", out=str(out), from_run=str(setup / "run"), **kw)


def test_resume_with_a_larger_budget_equals_one_straight_run(setup, tmp_path):
    loaded = planted()
    straight = run_stress(_cfg(setup, tmp_path / "a", budget=500), loaded=loaded)
    run_stress(_cfg(setup, tmp_path / "b", budget=300), loaded=loaded)
    resumed = run_stress(_cfg(setup, tmp_path / "b", budget=500, resume=True), loaded=loaded)
    assert resumed["entries"] == straight["entries"]
    assert (tmp_path / "a" / "worst.jsonl").read_text() == (tmp_path / "b" / "worst.jsonl").read_text()
    state = json.loads((tmp_path / "b" / "stress-state.json").read_text())
    assert all(s["passes"] > 0 for s in state["searches"].values())
    with pytest.raises(RunDirError, match="another model, corpus run or settings"):
        run_stress(_cfg(setup, tmp_path / "b", budget=500, seed=7, resume=True), loaded=loaded)


def test_report_gains_a_worst_case_section(setup, tmp_path):
    res = run_stress(_cfg(setup, tmp_path / "s", budget=300), loaded=planted())
    assert main(["report", str(tmp_path / "s" / "run"), "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "Worst case (actscope stress)" in html
    for row in res["table"]:
        assert f"<td>{row['kind']}</td>" in html
    assert main(["report", str(setup / "run"), "-o", str(tmp_path / "plain.html")]) == 0
    assert "Worst case" not in (tmp_path / "plain.html").read_text()  # no stress result: no section


def test_worst_inputs_are_judged_against_deployed_scales(setup, tmp_path, capsys):
    """`--scales CKPT`: the modules whose static input scale (written by `actscope deploy` from the
    corpus run) the worst found inputs exceed, the same verdicts `actscope audit CKPT worst-run`
    gives; the corpus run's own deployments are judged without being named."""
    run, ckpt = setup / "run", tmp_path / "fp8"
    assert main(["deploy", str(run), "-o", str(ckpt), "--scheme", "fp8-static"]) == 0
    capsys.readouterr()
    kinds = ("residual", "linear_input")
    res = run_stress(
        _cfg(setup, tmp_path / "s", budget=300, kinds=kinds, scales=(str(ckpt),)), loaded=planted()
    )
    (judged,) = res["scales"]  # named and recorded in the run's deployments: judged once
    assert judged["checkpoint"] == str(ckpt.resolve()) and judged["format"] == "compressed-tensors"
    assert judged["saturating"], "the planted trigger drives linear inputs past the corpus-calibrated scales"
    assert main(["audit", str(ckpt), str(tmp_path / "s" / "run"), "--json"]) == 0
    audited = {
        r["module"] for r in json.loads(capsys.readouterr().out)["modules"] if r["verdict"] == "saturates"
    }
    assert {m["module"] for m in judged["saturating"]} == audited
    for m in judged["saturating"]:
        assert m["worst_peak"] > m["representable"] and m["over"] > 1
    # without --scales the --from run's deployment is found and judged all the same
    again = run_stress(_cfg(setup, tmp_path / "t", budget=300, kinds=kinds), loaded=planted())
    assert [c["checkpoint"] for c in again["scales"]] == [str(ckpt.resolve())]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scales", "missing-dir"], "--scales missing-dir is not a directory"),
        (["--kinds", "residual", "--scales", "CKPT"], "add linear_input to --kinds"),
        (["--scales", "MODEL"], "has no static activation scales"),
    ],
)
def test_bad_scales_are_one_line_exit_2_before_any_search(setup, tmp_path, capsys, extra, message):
    ckpt = tmp_path / "fp8"
    assert main(["deploy", str(setup / "run"), "-o", str(ckpt), "--scheme", "fp8-static"]) == 0
    extra = [{"CKPT": str(ckpt), "MODEL": str(setup / "model")}.get(x, x) for x in extra]
    capsys.readouterr()
    args = ["stress", str(setup / "model"), "--from", str(setup / "run"), "-o", str(tmp_path / "s")]
    assert main([*args, "--length", "8", "--no-progress", *extra]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip() and "Loading weights" not in x]
    assert len(lines) == 1 and lines[0].startswith("actscope: error:") and message in lines[0], lines
    assert not (tmp_path / "s" / "worst.jsonl").exists()
