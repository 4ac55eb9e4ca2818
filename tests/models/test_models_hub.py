"""Hub ids with --download, against a small HTTP server on 127.0.0.1 in the Hub's layout.

The server answers what huggingface_hub asks for: /api/models/ORG/NAME[/revision/REV] (metadata,
resolving a branch to its commit), /api/models/ORG/NAME/tree/COMMIT (the file list) and
/ORG/NAME/resolve/REV/FILE (HEAD for metadata, GET for the bytes). It logs every request, so
the tests can say what was fetched: the pinned commit, never a pickle, nothing when offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

import actscope
from tinylm import TEXTS, char_tokenizer, tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY, PICKLED = "actscope-test/tiny-llama", "actscope-test/pickled-only"


def _repo_files(tmp: Path) -> dict[str, dict[str, bytes]]:
    d = tmp / "tiny"
    tiny_model("llama").save_pretrained(d)  # config.json, generation_config.json, model.safetensors
    char_tokenizer().save_pretrained(d)
    (d / "pytorch_model.bin").write_bytes(b"pickled weights a download must never fetch")
    tiny = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    pickled = {"config.json": tiny["config.json"], "pytorch_model.bin": b"pickle"}
    return {TINY: tiny, PICKLED: pickled}


class Hub(ThreadingHTTPServer):
    def __init__(self, repos):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos, self.log = repos, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body: bool):
        path = urlparse(self.path).path
        self.server.log.append((self.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) in (4, 6):  # .../ORG/NAME[/revision|tree/REV]
            repo = "/".join(parts[2:4])
            what, rev = (parts[4], parts[5]) if len(parts) == 6 else ("revision", "main")
            return self._api(repo, what, rev)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, rev, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            files = self.server.repos.get(repo)
            if files is None or rev not in ("main", COMMIT) or name not in files:
                return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"})
            data = files[name]
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            return self._send(200, data if body else b"", headers, length=len(data))
        self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})

    def _api(self, repo, what, rev):
        files = self.server.repos.get(repo)
        if files is None:
            return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
        if rev not in ("main", COMMIT):
            return self._send(404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
        if what == "revision":
            info = {"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                    "siblings": [{"rfilename": f} for f in sorted(files)]}  # fmt: skip
        else:  # tree
            info = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for f, b in sorted(files.items())]  # fmt: skip
        self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def _send(self, code, data, headers, length=None):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        self.end_headers()
        if data:
            self.wfile.write(data)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = Hub(_repo_files(tmp_path_factory.mktemp("repos")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def env(hub, tmp_path, monkeypatch):
    """The Hub is the local server; an empty HF cache of this test's own; online."""
    values = {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    hub.log.clear()
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:4]))
    return {**os.environ, "PYTHONPATH": str(Path(actscope.__file__).parents[1])}


def _measure(env, cwd, *args):
    cmd = [sys.executable, "-m", "actscope", "measure", *args, "--corpus", "texts.jsonl", "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)


def test_download_pins_the_revision_and_fetches_no_pickle(hub, env, tmp_path):
    res = _measure(env, tmp_path, TINY, "--download", "--out", "run")
    assert res.returncode == 0, res.stderr[-2000:]
    model = json.loads((tmp_path / "run" / "run.json").read_text())["model"]
    assert model["kind"] == "hf_hub" and model["model_type"] == "llama"
    assert model["hub"] == {
        "repo_id": TINY, "revision": COMMIT, "requested_revision": "main", "downloaded": True,
        "endpoint": hub.url,
    }  # fmt: skip
    fetched = {p.rsplit("/", 1)[-1] for m, p in hub.log if m == "GET" and "/resolve/" in p}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= fetched
    assert not any(p.endswith(".bin") for _, p in hub.log)  # the pickle was never asked for
    # Files come from the pinned commit, not from a branch that may move meanwhile.
    assert all(f"/resolve/{COMMIT}/" in p for _, p in hub.log if "/resolve/" in p)

    # Cached now: without --download, and offline, it loads from the cache with no request.
    hub.log.clear()
    res = _measure({**env, "HF_HUB_OFFLINE": "1"}, tmp_path, TINY, "--out", "again")
    assert res.returncode == 0, res.stderr[-2000:]
    assert hub.log == []
    again = json.loads((tmp_path / "again" / "run.json").read_text())["model"]
    assert again["kind"] == "hf_cache" and again["hub"]["revision"] == COMMIT
    assert again["sha256"] == model["sha256"]


def test_without_download_the_message_says_how(hub, env, tmp_path):
    res = _measure(env, tmp_path, TINY, "--out", "run")
    assert res.returncode == 2 and hub.log == []
    assert res.stderr.strip().splitlines()[-1] == (
        f"actscope: error: model {TINY!r} is not in the local Hugging Face cache; pass --download "
        "(download=True in Python) to fetch its safetensors weights and tokenizer from the Hugging Face "
        "Hub, or pass a local model directory"
    )


def test_offline_is_respected(hub, env, tmp_path):
    res = _measure({**env, "HF_HUB_OFFLINE": "1"}, tmp_path, TINY, "--download", "--out", "run")
    assert res.returncode == 2 and hub.log == []
    assert (
        "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE" in res.stderr
    )


def test_pickled_only_repository_is_refused(hub, env, tmp_path):
    res = _measure(env, tmp_path, PICKLED, "--download", "--out", "run")
    assert res.returncode == 2
    assert (
        f"Hub model {PICKLED!r} has only pickled weights (pytorch_model.bin); actscope downloads "
        in res.stderr
    )
    assert not any("/resolve/" in p for _, p in hub.log)


def test_api_download_and_bad_ids(hub, env, tmp_path):
    run = actscope.measure(TINY, corpus=TEXTS[:2], download=True, revision=COMMIT)
    assert run.manifest["model"]["hub"]["revision"] == COMMIT
    assert run.manifest["model"]["hub"]["requested_revision"] == COMMIT
    with pytest.raises(actscope.ActscopeError, match="has no revision 'v9'; give a branch, tag or commit"):
        actscope.measure(TINY, corpus=TEXTS[:2], download=True, revision="v9")
    with pytest.raises(actscope.ActscopeError, match="no model 'actscope-test/nope' on the Hub"):
        actscope.measure("actscope-test/nope", corpus=TEXTS[:2], download=True)
    with pytest.raises(actscope.ActscopeError, match="download= applies to a model source"):
        actscope.measure(tiny_model("llama"), char_tokenizer(), corpus=TEXTS[:2], download=True)
