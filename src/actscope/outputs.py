"""Files the views write (report, card -o, compare -o and --chart, export -o): checked before
any work, written whole or not at all.

`check` refuses a path that cannot become a file (a directory, a path below a regular file,
a folder without write permission) before a report is rendered; `write` fills a temporary
next to the target and renames it into place, so a full disk or a size limit leaves the
previous file intact and gives a one-line error instead of a truncated file.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .errors import UserError

T = TypeVar("T")


def check(path: str | Path, flag: str) -> Path:
    """`path` as a file we may create or replace; a UserError naming `flag` otherwise."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{flag} {p} is a directory", f"give a file name, e.g. {p / 'out'}{p.suffix}")
    if p.exists() and not p.is_file():
        raise UserError(f"{flag} {p} is not a regular file", "give the path of a file to write")
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(
            f"cannot write {flag} {p}: {ancestor} is a file, not a directory", "choose another path"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {flag} {p}: no write permission in {ancestor}", "choose another path")
    return p


def write(path: str | Path, flag: str, fill: Callable[[Path], T]) -> T:
    """Call `fill(tmp)` to write a temporary next to `path`, then rename it to `path`."""
    p = check(path, flag)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as err:
        raise _cannot(flag, p, err) from None
    os.close(fd)
    tmp = Path(name)
    try:
        result = fill(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; what we write is meant to be read
        os.replace(tmp, p)
        return result
    except OSError as err:  # ENOSPC, EFBIG, EIO ...
        raise _cannot(flag, p, err) from None
    except RuntimeError as err:  # torch.save's C++ stream writer reports a failed write so
        if not _from_torch_save(err):
            raise
        raise _cannot(flag, p, err) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, flag: str, text: str) -> Path:
    write(path, flag, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return Path(path)


def _from_torch_save(err: BaseException) -> bool:
    return any("torch/serialization.py" in f.filename for f in traceback.extract_tb(err.__traceback__))


def _cannot(flag: str, path: Path, err: BaseException) -> UserError:
    reason = getattr(err, "strerror", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
    return UserError(
        f"cannot write {flag} {path} ({reason}); nothing was written there",
        "free some space or choose another path",
    )
