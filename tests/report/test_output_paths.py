"""Output paths of the views (issue 15, item 8): a directory, a path below a file, a special
file or a full disk is a one-line error (exit 2) before or instead of a broken file."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys

import pytest

from actscope.cli import main

# (command, flag): each writes one file named by the flag
WRITERS = [
    (["report"], "-o"),
    (["card"], "-o"),
    (["export", "--format", "json"], "-o"),
    (["export", "--format", "smoothquant"], "-o"),
    (["compare"], "-o"),
    (["compare"], "--chart"),
]
IDS = ["report", "card", "export-json", "export-smoothquant", "compare", "compare-chart"]


def _argv(command, run, flag, path):
    return [command[0], str(run), *command[1:], flag, str(path)]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("actscope: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command, flag", WRITERS, ids=IDS)
def test_output_that_is_a_directory(run_llama, tmp_path, capsys, command, flag):
    assert main(_argv(command, run_llama, flag, tmp_path)) == 2
    assert f"{flag} {tmp_path} is a directory" in _one_error_line(capsys)


@pytest.mark.parametrize("command, flag", WRITERS, ids=IDS)
def test_output_below_a_regular_file(run_llama, tmp_path, capsys, command, flag):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(_argv(command, run_llama, flag, f / "out")) == 2
    assert f"{f} is a file, not a directory" in _one_error_line(capsys)


@pytest.mark.parametrize("command, flag", WRITERS[:3], ids=IDS[:3])
def test_output_that_is_a_device(run_llama, capsys, command, flag):
    assert main(_argv(command, run_llama, flag, "/dev/full")) == 2
    assert "/dev/full is not a regular file" in _one_error_line(capsys)


def _file_size_limit():
    """Writes past 2 KiB fail with EFBIG, as on a full disk (the signal would kill instead)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 10, 2 << 10))


@pytest.mark.parametrize(
    "command, flag", [WRITERS[0], WRITERS[2], WRITERS[3]], ids=["report", "export-json", "export-smoothquant"]
)
def test_full_disk_keeps_the_previous_file(run_llama, tmp_path, command, flag):
    out = tmp_path / "out"
    out.write_text("the previous file")
    r = subprocess.run(
        [sys.executable, "-m", "actscope", *_argv(command, run_llama, flag, out)],
        capture_output=True,
        text=True,
        preexec_fn=_file_size_limit,
        timeout=600,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"cannot write {flag} {out}" in r.stderr and "nothing was written there" in r.stderr
    assert out.read_text() == "the previous file"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left
