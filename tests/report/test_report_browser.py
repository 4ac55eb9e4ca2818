"""The HTML report in a real browser: headless Chromium (Debian's chromium package).

Loads the report from file://, requires no console message at all (the page has no
script, so any message is an error: a failed load, an injected script...), takes a
screenshot that must not be blank, and reads the DOM Chromium built: key elements
are there and corpus markup stayed text. Skipped only where Chromium is absent and
this is not CI (`make browser` installs it; CI=true makes its absence a failure).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from actscope.report.html import render_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed in CI (make browser installs it)")
    pytest.skip("chromium is not installed (run `make browser`)")


def run_chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def console_messages(stderr: str) -> list[str]:
    """Page console output (console.*, uncaught exceptions, failed loads) from Chromium's log."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report(run_gemma, run_llama, tmp_path_factory) -> Path:
    return render_report([run_gemma, run_llama], tmp_path_factory.mktemp("html") / "report.html")


def test_screenshot_not_blank_and_no_console_errors(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    res = run_chromium(
        report.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (2000, 1280)
    dark = (img < 128).mean()  # text, chart lines, headings
    assert 0.005 < dark < 0.5, f"screenshot looks blank or broken (dark fraction {dark:.4f})"
    assert len(np.unique(img)) > 32  # anti-aliased text and charts, not a flat page
    # something drawn in the lower half too: the layout did not collapse
    assert (img[1000:] < 128).mean() > 0.002


def test_dom_has_key_elements_and_markup_stays_text(report, tmp_path, hostile):
    res = run_chromium(report.as_uri(), tmp_path / "profile", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    dom = res.stdout
    assert 'id="report-title"' in dom and 'id="comparison"' in dom
    assert len(re.findall(r'<section class="run"', dom)) == 2
    assert re.search(r'id="run1-M">[0-9.,e+-]+<', dom)
    assert dom.count("<svg") >= 12  # two runs of charts plus the comparison chart
    assert len(re.findall(r'class="verdict-row"', dom)) == 6
    assert 'class="top"' in dom and 'class="kinds"' in dom and 'class="bootstrap"' in dom
    # Corpus markup is text: Chromium built no script or img element from it.
    assert "<script" not in dom and "<img" not in dom and "<b>web</b>" not in dom
    assert "&lt;script&gt;alert('xss')&lt;/script&gt;" in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
