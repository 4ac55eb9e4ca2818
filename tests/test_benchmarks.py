"""benchmarks/overhead.py still runs end to end and prints what `make bench` promises
(on a tiny model saved as a Hugging Face directory; its figures are not checked: wall
time is never asserted on)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tinylm import char_tokenizer, tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_overhead_benchmark_prints_its_figures(tmp_path):
    model_dir = tmp_path / "tiny-llama"
    tiny_model("llama").save_pretrained(model_dir)
    char_tokenizer().save_pretrained(model_dir)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--model", str(model_dir)]
    cmd += ["--samples", "4", "--seq", "16", "--batch", "2", "--rounds", "1"]
    cmd += ["--mem-samples", "4,8", "--mem-seq", "8"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"overhead ratio \(paper sites\): \d+\.\d\d", lines[0]), lines[0]
    assert re.fullmatch(r"overhead ratio \(all sites\): \d+\.\d\d", lines[1]), lines[1]
    text = out.stdout
    assert "median ratio of 2 batch pairs" in text and "fastest of the rounds per batch" in text
    assert re.search(r"paper \+ key/value sites vs paper sites: [+-]\d+\.\d% \(median", text), text
    costs = re.search(r"time in each kind's taps and statistics per batch, .*: (.*); total \d+\.\d%", text)
    assert costs, text
    timed = set(re.findall(r"(\w+) \d+\.\d ms \(\d+\.\d\d%\)", costs.group(1)))
    assert {"residual", "query", "key", "value", "attn_logits", "linear_input"} <= timed, timed
    assert "padding fraction: benchmark batches 0.000" in text
    assert len(re.findall(r"peak RSS, whole measure\(\) of (4|8) samples", text)) == 2
