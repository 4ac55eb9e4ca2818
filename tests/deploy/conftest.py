"""A quick SmolLM2 run (linear inputs measured, `actscope quant` on it) and checkpoints deployed from it."""

from __future__ import annotations

import pytest

from actscope.config import MeasureConfig
from actscope.corpus import load_corpus
from actscope.deploy import DeployConfig, deploy
from actscope.quant.config import QuantConfig
from actscope.quant.pipeline import run_quant
from actscope.quant.recommend import Budget
from actscope.runner import measure

SCHEMES = ("fp8_e4m3:tensor:absmax", "int8:token")


@pytest.fixture(scope="session")
def smol_run(smollm, tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy") / "run"
    corpus = load_corpus("quick")
    cfg = MeasureConfig(out=str(out), progress=False, sites="linear_input,kv", max_length=64, limit=12)
    measure(cfg, loaded=smollm, corpus=corpus)
    q = QuantConfig(
        target=str(out),
        calib=4,
        eval=4,
        max_length=64,
        schemes=SCHEMES,
        e2e=SCHEMES,
        budget=Budget(min_sqnr_db=0.0, max_ppl_increase_pct=100.0, max_checks=1),
    )
    run_quant(q, loaded=smollm, corpus=corpus)
    return out


@pytest.fixture(scope="session")
def ckpt_fp8(smol_run, tmp_path_factory):
    """fp8-static, compressed-tensors, the source's float32 tensors and scales, verified (bf16 scales:
    test_deploy_scales.py's plan test; the reload of a bf16 checkpoint computes partly in bf16, see docs/deploy.md)."""
    out = tmp_path_factory.mktemp("ckpt") / "fp8"
    cfg = DeployConfig(run=str(smol_run), out=str(out), scheme="fp8-static", verify=True)
    return deploy(cfg)


@pytest.fixture(scope="session")
def ckpt_modelopt(smol_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "modelopt"
    return deploy(DeployConfig(run=str(smol_run), out=str(out), scheme="fp8-static", format="modelopt"))
