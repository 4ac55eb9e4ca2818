"""The HTML report and the model card show the deployed recipe and the audit when the run has them."""

from __future__ import annotations

import shutil

import pytest

from actscope.deploy.audit import audit, write_audit
from actscope.report.card import card_markdown
from actscope.report.html import render_report
from actscope.rundir import RunView, write_manifest

pytestmark = pytest.mark.slow


@pytest.fixture()
def audited(smol_run, ckpt_fp8, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smol_run, run)
    m = RunView(run).manifest  # the verified fp8 deployment only (the fixtures' order varies)
    m["deployments"] = [d for d in m["deployments"] if d["out"] == str(ckpt_fp8[0].resolve())]
    write_manifest(run, m)
    name, rows = audit(ckpt_fp8[0], RunView(run))
    write_audit(run, ckpt_fp8[0], name, rows)
    return run


def test_html_report_shows_deployment_and_audit(audited, tmp_path):
    html = render_report([audited], tmp_path / "r.html").read_text()
    assert "Deployment" in html and "fp8-static" in html
    assert "0 of 210 static input scales saturate" in html


def test_card_shows_deployed_recipe_and_audit(audited):
    md = card_markdown(RunView.measured(audited))
    assert "| deployed recipe | `fp8-static` (compressed-tensors, absmax scales); reloaded: perplexity" in md
    assert "| audit | compressed-tensors checkpoint: 0 of 210 input scales saturate |" in md


def test_plain_run_has_no_deployment_block(tmp_path, smol_run):
    run = tmp_path / "plain"
    shutil.copytree(smol_run, run)
    m = RunView(run).manifest
    m.pop("deployments", None)
    write_manifest(run, m)
    assert "deployed recipe" not in card_markdown(RunView.measured(run))
