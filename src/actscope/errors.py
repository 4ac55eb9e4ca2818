"""User-facing errors.

A UserError (an ActscopeError) is bad input: the CLI prints its message on one
line (no traceback) and exits with code 2; the Python API raises the very same
exception. The message names the bad value and says how to fix it.
Internal invariants use assert instead.
"""

from __future__ import annotations


class ActscopeError(Exception):
    """Base of the errors actscope raises on bad input; the Python API's callers catch this."""


class UserError(ActscopeError):
    """Bad input from the user. `str(err)` is the one-line message shown to them."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class ModelError(UserError):
    """The model source cannot be used (missing, corrupt, unsupported)."""


class CorpusError(UserError):
    """The corpus cannot be read or is empty."""


class RunDirError(UserError):
    """A run directory is missing, unwritable, corrupt or of another schema."""


class Interrupted(Exception):
    """Raised when SIGINT/SIGTERM stops a run after its state was checkpointed."""

    exit_code = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt: the same unwinding (temporary
    files and directories removed by their `finally`), exit code 128 + 15."""

    exit_code = 143
