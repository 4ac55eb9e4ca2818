"""Input scales: rounded up in the stored dtype, so scale x qmax never falls below the threshold."""

from __future__ import annotations

import pytest
import torch

from actscope.deploy.plan import build_plan, group_of
from actscope.deploy.run import model_layout, source_model
from actscope.deploy.schemes import deploy_scheme
from actscope.errors import UserError
from actscope.quant.formats import FP8_E4M3, INT8
from actscope.quant.primitives import stored_scale
from actscope.rundir import RunView


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("fmt", [FP8_E4M3, INT8])
def test_stored_scale_covers_the_threshold_and_is_the_smallest_that_does(fmt, dtype):
    t = torch.logspace(-3, 4, 2000, dtype=torch.float64).float()
    s = stored_scale(t, fmt, dtype)
    assert s.dtype == dtype
    assert bool((s.double() * fmt.max_value >= t.double()).all())
    below = torch.nextafter(s, torch.zeros_like(s))  # one ulp less no longer covers it
    assert bool((below.double() * fmt.max_value < t.double()).all())
    naive = (t / fmt.max_value).to(dtype)
    assert bool((naive.double() * fmt.max_value < t.double()).any())  # a plain cast would clip some


def test_zero_threshold_gets_a_positive_scale():
    assert float(stored_scale(0.0, FP8_E4M3, torch.float16)) > 0


def test_fused_groups():
    assert group_of("model.layers.3.self_attn.k_proj") == group_of("model.layers.3.self_attn.v_proj")
    assert group_of("model.layers.3.mlp.up_proj") == "model.layers.3.mlp.{gate_proj,up_proj}"
    assert group_of("model.layers.3.mlp.down_proj") == "model.layers.3.mlp.down_proj"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("scheme", ["fp8-static", "int8-static"])
def test_every_planned_scale_covers_its_measured_peak(smol_run, scheme, dtype):
    view = RunView(smol_run)
    linear, head, _ = model_layout(source_model(view).directory)
    s = deploy_scheme(scheme)
    plan = build_plan(view, s, linear, head, dtype)
    peaks = {r["module"]: r["absmax"] for r in view.sites if r["kind"] == "linear_input"}
    assert set(plan.modules) == set(linear) and plan.ignore == {"lm_head": plan.ignore["lm_head"]}
    for m, p in plan.modules.items():
        assert float(p.scale.double()) * s.fmt.max_value >= peaks[m], m


def test_clip_rules_lower_the_threshold(smol_run):
    view = RunView(smol_run)
    linear, head, _ = model_layout(source_model(view).directory)
    full = build_plan(view, deploy_scheme("fp8-static"), linear, head, torch.float32)
    p = build_plan(view, deploy_scheme("fp8-static", "p99.99"), linear, head, torch.float32)
    assert all(p.modules[m].threshold <= full.modules[m].threshold for m in full.modules)
    assert any(p.modules[m].threshold < full.modules[m].threshold for m in full.modules)


def test_recommended_needs_a_recommendation():
    with pytest.raises(UserError, match="no quantization recommendation yet"):
        deploy_scheme("recommended", quant=None)
    rec = {"recommendation": {"scheme": "int8:token", "keep_high_precision": ["layers.0.mlp.down_proj.in"]}}
    s = deploy_scheme("recommended", quant=rec)
    assert (s.fmt, s.static, s.keep) == (INT8, False, ("layers.0.mlp.down_proj.in",))
