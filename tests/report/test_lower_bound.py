"""Every view of an overflowed run says M is a lower bound and gives no headroom; a partial
merge says it is partial (issue 15.1, 15.4)."""

from __future__ import annotations

from actscope.report import compare
from actscope.report.card import card_fields, card_markdown
from actscope.report.html import render_report
from actscope.rundir import RunView


def _overflowed(m: dict) -> None:
    s = m["summary"]
    s["M_lower_bound"] = True
    s["safety"]["fp16_headroom"] = None
    s["safety"]["fp16_safe"] = False
    s["nonfinite"].update(posinf=3, overflowed=True, first_site=s["location"]["site"])


def test_views_of_an_overflowed_run_say_lower_bound(run_copy, tmp_path):
    run = run_copy(_overflowed)
    view = RunView.measured(run)
    assert card_fields(view)["max_abs_activation_is_lower_bound"] is True
    card = card_markdown(view)
    assert "lower bound" in card and "headroom x" not in card
    md = compare.to_markdown(compare.build([view, view]))
    assert "≥ " in md and "(lower bound)" in md
    html = render_report([run], tmp_path / "r.html").read_text()
    assert "a lower bound" in html and "&ge;" in html


def test_views_of_a_partial_merge_say_partial(run_copy, tmp_path):
    run = run_copy(lambda m: m.update(status="partial", shards_merged="2 of 3", shards_missing=["2/3"]))
    view = RunView.measured(run)
    assert "partial" in card_markdown(view)
    assert "(partial merge)" in compare.to_markdown(compare.build([view]))
    assert "partial: a merge of 2 of 3 shards" in render_report([run], tmp_path / "r.html").read_text()
