"""Bad input: one line on stderr, exit 2 (the six cases of issue #16)."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actscope.cli import main

pytestmark = pytest.mark.slow


def one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err


def test_run_without_linear_input_sites(smol_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(smol_run, run)
    t = pq.read_table(run / "sites.parquet").to_pylist()
    rows = [r for r in t if r["kind"] != "linear_input"] or [dict(t[0], kind="residual")]
    schema = pq.read_schema(run / "sites.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), run / "sites.parquet")
    one_line_error(capsys, ["deploy", str(run), "-o", str(tmp_path / "o")], "measured no linear-input sites")


def test_unknown_scheme(smol_run, tmp_path, capsys):
    one_line_error(
        capsys, ["deploy", str(smol_run), "-o", str(tmp_path / "o"), "--scheme", "fp4"], "unknown scheme"
    )


def test_out_exists(smol_run, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    one_line_error(capsys, ["deploy", str(smol_run), "-o", str(tmp_path / "o")], "already exists")


def test_model_file_gone(smol_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(smol_run, run)
    m = json.loads((run / "run.json").read_text())
    m["model"]["source"] = str(tmp_path / "gone" / "model.gguf")
    (run / "run.json").write_text(json.dumps(m))
    one_line_error(capsys, ["deploy", str(run), "-o", str(tmp_path / "o")], "cannot be found")


def test_checkpoint_without_static_scales(smol_run, tmp_path, capsys):
    ck = tmp_path / "ck"
    ck.mkdir()
    qc = {
        "quant_method": "compressed-tensors",
        "config_groups": {"g": {"input_activations": {"dynamic": True}}},
    }
    (ck / "config.json").write_text(json.dumps({"quantization_config": qc}))
    one_line_error(capsys, ["audit", str(ck), str(smol_run)], "no static activation scales")


def test_corrupt_safetensors(ckpt_fp8, smol_run, tmp_path, capsys):
    ck = tmp_path / "ck"
    ck.mkdir()
    shutil.copy(ckpt_fp8[0] / "config.json", ck)
    (ck / "model.safetensors").write_bytes((ckpt_fp8[0] / "model.safetensors").read_bytes()[:5000])
    one_line_error(capsys, ["audit", str(ck), str(smol_run)], "truncated or corrupt")
