"""SIGINT and SIGTERM in the command line: they unwind, and they are never lost.

Python runs a signal handler between two bytecodes of whatever runs at that moment. When
that is a destructor (tqdm's `__del__`), a weakref callback or the garbage collector, the
exception the handler raises is printed as "Exception ignored" and dropped, and the command
would go on to publish its result and exit 0 (seen in CI: a SIGTERM during a GGUF
conversion). So the handler also remembers the signal:

- `check()` raises it (again) at each commit point (a cache entry or a completed run renamed
  into place), so nothing is published after a signal and the `finally` blocks of the
  temporaries run as they would have;
- `main()` turns a command that returned normally after a signal into that signal's exit.

`_StopOnSignal` in runner.py replaces these handlers inside the measuring loop with its own
(finish the batch, checkpoint, stop); they are back once the loop is left.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from .errors import Terminated

HANDLED = (signal.SIGINT, signal.SIGTERM)

_pending: int | None = None


def _handle(signum, frame):
    global _pending
    _pending = signum
    raise _exception(signum)


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated(signum) if signum == signal.SIGTERM else KeyboardInterrupt()


def pending() -> int | None:
    """The signal that arrived during this command, if one did."""
    return _pending


def check() -> None:
    """Raise the signal that arrived, in case its first exception was dropped."""
    if _pending is not None:
        raise _exception(_pending)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """The handlers above for the duration of one command; the previous ones after it (a
    `main()` called in-process, as tests do, leaves no trace). Outside the main thread,
    where Python cannot install handlers, nothing changes."""
    global _pending
    _pending = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, _handle) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _pending = None  # a later command (or a library call) in this process starts clean
