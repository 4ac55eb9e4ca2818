"""The GGUF conversion cache under damage and signals (issue 15, items 3, 8, 9, 10).

Each test works on a private cache root (a copy of the session's SmolLM2 conversion, or an
empty one), never on the shared default cache that other runs may be reading.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from actscope.cache import cache_root
from actscope.errors import UserError
from actscope.models import load_model, resolve_source
from actscope.models.gguf_convert import META_FILE
from signalling import SignalInDestructor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(model_cache):
    """SmolLM2 converted in the session cache, and its weights."""
    loaded = load_model("smollm2-135m", cache_dir=model_cache)
    return resolve_source("smollm2-135m", cache_dir=model_cache).directory, loaded.model.state_dict()


@pytest.fixture
def private_cache(tmp_path, reference) -> tuple[Path, Path]:
    entry, _ = reference
    root = tmp_path / "cache"
    root.mkdir()
    shutil.copytree(entry, root / entry.name)
    return root, root / entry.name


def _flip_bytes(path: Path, at: int, n: int = 64) -> None:
    with path.open("r+b") as f:
        f.seek(at)
        data = f.read(n)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in data))


@pytest.mark.parametrize(
    "damage, why",
    [
        (
            lambda e: _flip_bytes(e / "model.safetensors", 200_000_000),
            "model.safetensors does not match the sha256",
        ),
        (lambda e: (e / META_FILE).unlink(), f"has no {META_FILE}"),
        (lambda e: _truncate(e / "model.safetensors"), "model.safetensors has "),
        (lambda e: (e / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    ],
    ids=["flipped-bytes", "no-metadata", "truncated", "file-missing"],
)
def test_damaged_entry_is_found_and_converted_again(private_cache, reference, caplog, damage, why):
    root, entry = private_cache
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="actscope"):
        loaded = load_model("smollm2-135m", cache_dir=root)
    assert any("is damaged" in r.message and why in r.message for r in caplog.records), caplog.text
    _, weights = reference
    got = loaded.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in weights.items())  # the measured weights are the GGUF's
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="actscope"):
        load_model("smollm2-135m", cache_dir=root)  # repaired for good: no second conversion
    assert not any("is damaged" in r.message for r in caplog.records)
    assert not list(root.glob(".*.tmp"))


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _start_conversion(root: Path) -> tuple[subprocess.Popen, Path]:
    """`actscope sites smollm2-135m` into an empty cache, up to the moment its temporary
    conversion directory is being written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "actscope", "sites", "smollm2-135m", "--cache-dir", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while proc.poll() is None:
        tmp = [p for p in root.glob(".*.tmp") if p.is_dir() and any(p.glob("*.safetensors"))]
        if tmp:
            return proc, tmp[0]
        time.sleep(0.05)
    pytest.fail(f"the conversion ended before its temporary was seen: {proc.stderr.read()[-2000:]}")


def test_sigterm_during_conversion_removes_its_temporary(tmp_path):
    proc, tmp = _start_conversion(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "actscope: terminated" in err
    assert not tmp.exists() and not list(tmp_path.glob(".*.tmp"))


def test_sigkill_leftover_is_swept_on_the_next_start(tmp_path):
    proc, tmp = _start_conversion(tmp_path)
    proc.kill()
    proc.communicate(timeout=120)
    assert tmp.is_dir()  # SIGKILL runs no cleanup
    time.sleep(2.5)  # past the grace period between creating a temporary and locking it
    cache_root(tmp_path)
    assert not tmp.exists()


def test_live_temporary_is_not_swept(tmp_path):
    from actscope.cache import atomic_dir, sweep_stale

    with atomic_dir(tmp_path / "entry") as tmp:
        (tmp / "x").write_text("being written")
        time.sleep(2.5)
        assert sweep_stale(tmp_path) == [] and tmp.is_dir()  # locked by this process
    assert (tmp_path / "entry" / "x").is_file()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_cache_dir_that_is_a_file(tmp_path, monkeypatch, how):
    f = tmp_path / "file"
    f.write_text("x")
    if how == "env":
        monkeypatch.setenv("ACTSCOPE_CACHE", str(f))
    with pytest.raises(
        UserError,
        match=f"the model cache {'--cache-dir' if how == 'flag' else 'ACTSCOPE_CACHE='}.*is not a directory",
    ):
        cache_root(f if how == "flag" else None)
    with pytest.raises(UserError, match="cannot be used"):
        cache_root(f / "below")


def test_offload_scratch_is_removed_at_exit_and_swept_after_sigkill(tmp_path):
    """accelerate's disk-offload folder lives in the cache root: gone when the process
    exits, and a SIGKILLed process's folder is swept by the next start (not left in /tmp)."""
    code = (
        "import sys, time; from pathlib import Path; from actscope.cache import scratch_dir\n"
        "d = scratch_dir(Path(sys.argv[1]), 'offload'); (d / 'w.bin').write_bytes(b'0' * 64)\n"
        "print(d, flush=True); time.sleep(float(sys.argv[2]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path), "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not Path(done.stdout.strip()).exists()  # removed at a normal exit

    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), "60"], stdout=subprocess.PIPE, text=True
    )
    left = Path(proc.stdout.readline().strip())
    assert left.is_dir() and left.parent == tmp_path
    time.sleep(2.5)  # past the grace period between creating a temporary and locking it
    cache_root(tmp_path)
    assert left.is_dir()  # still locked by the live process: kept
    proc.kill()
    proc.communicate(timeout=60)
    assert left.is_dir()  # SIGKILL runs no cleanup
    cache_root(tmp_path)
    assert not left.exists()


def test_sigterm_dropped_by_a_destructor_still_stops_the_conversion(tmp_path, monkeypatch):
    from actscope import cli
    from actscope.models import gguf_convert

    real, dropped = gguf_convert.sha256_file, []

    def hash_after_a_dropped_sigterm(path):
        if not dropped:
            dropped.append(sys.unraisablehook)
            monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
            SignalInDestructor(signal.SIGTERM)  # collected at once: the handler runs in __del__
        return real(path)

    monkeypatch.setattr(gguf_convert, "sha256_file", hash_after_a_dropped_sigterm)
    assert cli.main(["sites", "smollm2-135m", "--cache-dir", str(tmp_path)]) == 143
    from actscope import signals

    assert signals.pending() is None  # forgotten once main() returns: later cache writes go on (CI)
    assert dropped[1:] and all(issubclass(t, KeyboardInterrupt) for t in dropped[1:])  # it was dropped
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary went as on a plain SIGTERM
    assert not [
        p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")
    ]  # nothing published
