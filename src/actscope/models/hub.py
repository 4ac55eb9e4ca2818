"""Hugging Face Hub ids (ORG/NAME): the local cache, or a download when asked for.

    directory, hub = snapshot("HuggingFaceTB/SmolLM2-135M", download=True, revision="main")

Without `download` only the local cache is read (no network), as before. With it, the
revision is first resolved to its commit (pinned: the files come from that commit and
the manifest records it), then safetensors weights, configs and tokenizer files are
fetched with huggingface_hub; pickled weights are never downloaded. HF_HUB_OFFLINE=1
keeps every call local. HF_ENDPOINT and HF_HUB_CACHE are read when called, not at import.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError

# What a causal LM needs to load: configs, safetensors weights (and their index), tokenizer files.
ALLOW = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "vocab*", "merges*", "*.py"]
PICKLES = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]  # can run code when loaded: never fetched
_TRUE = {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub reads it, at call time."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def snapshot(repo_id: str, *, download: bool = False, revision: str | None = None) -> tuple[Path, dict]:
    """(local snapshot directory, manifest "hub" section) of a Hub model."""
    if download and not offline():
        return _download(repo_id, revision)
    return _cached(repo_id, revision, download)


def _kwargs() -> dict:
    return {"endpoint": os.environ.get("HF_ENDPOINT") or None, "cache_dir": os.environ.get("HF_HUB_CACHE")}


def _cached(repo_id: str, revision: str | None, download: bool) -> tuple[Path, dict]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        # The patterns of a download: a snapshot cached without its pickles is complete here.
        directory = Path(
            snapshot_download(
                repo_id, revision=revision, local_files_only=True, cache_dir=_kwargs()["cache_dir"],
                allow_patterns=ALLOW, ignore_patterns=PICKLES,
            )
        )  # fmt: skip
    except (LocalEntryNotFoundError, HFValidationError, OSError) as err:
        if download:  # asked to download, but HF_HUB_OFFLINE is set
            raise ModelError(
                f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
                "unset HF_HUB_OFFLINE to download it, or pass a local model directory",
            ) from err
        raise ModelError(
            f"model {repo_id!r} is not in the local Hugging Face cache",
            "pass --download (download=True in Python) to fetch its safetensors weights and tokenizer "
            "from the Hugging Face Hub, or pass a local model directory",
        ) from err
    return directory, _section(repo_id, revision, directory.name, downloaded=False)


def _download(repo_id: str, revision: str | None) -> tuple[Path, dict]:
    """Pin the revision to a commit, refuse a repository without safetensors, fetch the files."""
    from huggingface_hub import HfApi, snapshot_download

    kw = _kwargs()
    try:
        info = HfApi(endpoint=kw["endpoint"]).model_info(repo_id, revision=revision)
        files = [s.rfilename for s in info.siblings or []]
        _check_files(repo_id, files)
        directory = Path(
            snapshot_download(repo_id, revision=info.sha, allow_patterns=ALLOW, ignore_patterns=PICKLES, **kw)
        )
        _remember_ref(directory, revision or "main", info.sha)
    except ModelError:
        raise
    except Exception as err:
        raise _hub_error(repo_id, revision, err) from err
    return directory, _section(repo_id, revision, info.sha, downloaded=True)


def _remember_ref(snapshot_dir: Path, revision: str, commit: str) -> None:
    """Record branch/tag -> commit in the cache (refs/REV), as a download by branch name would,
    so that the cached model is found later without --download and offline."""
    if revision == commit:
        return
    ref = snapshot_dir.parent.parent / "refs" / revision  # models--ORG--NAME/snapshots/COMMIT
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)


def _check_files(repo_id: str, files: list[str]) -> None:
    if not any(f.endswith(".safetensors") for f in files):
        pickled = [f for f in files if f.endswith((".bin", ".pt", ".pth"))]
        what = f"only pickled weights ({', '.join(pickled[:3])})" if pickled else "no weights"
        raise ModelError(
            f"Hub model {repo_id!r} has {what}; actscope downloads safetensors only",
            "convert the weights to safetensors and pass the directory (--allow-pickle only for trusted local files)",
        )
    if "config.json" not in files:
        raise ModelError(f"Hub model {repo_id!r} has no config.json", "give the id of a transformers model")


def _hub_error(repo_id: str, revision: str | None, err: Exception) -> ModelError:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(err, RevisionNotFoundError):
        return ModelError(
            f"Hub model {repo_id!r} has no revision {revision!r}", "give a branch, tag or commit"
        )
    if isinstance(err, RepositoryNotFoundError):
        return ModelError(
            f"no model {repo_id!r} on the Hub (or it is private)", "check the id and your token"
        )
    endpoint = _kwargs()["endpoint"] or "https://huggingface.co"
    first = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
    return ModelError(
        f"cannot download {repo_id!r} from {endpoint} ({first})",
        "check the network and HF_ENDPOINT, or pass a local model directory",
    )


def _section(repo_id: str, requested: str | None, commit: str, downloaded: bool) -> dict:
    return {
        "repo_id": repo_id,
        "revision": commit,  # the commit the files came from
        "requested_revision": requested or "main",
        "downloaded": downloaded,
        "endpoint": _kwargs()["endpoint"] or "https://huggingface.co",
    }
