"""Command line: parse, call the library, map errors to exit codes. No logic here.

Subcommands live in small modules that expose `register(subparsers)`; each
handler returns an exit code. A UserError prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from . import signals
from .errors import Interrupted, Terminated, UserError
from .textsafe import visible

# Modules that add subcommands, in help order.
COMMAND_MODULES = (
    "actscope.cli_measure",
    "actscope.cli_corpus",
    "actscope.cli_report",
    "actscope.cli_quant",
    "actscope.cli_stress",
    "actscope.cli_deploy",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        self.exit(2, f"actscope: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="actscope", description="Measure the maximum activations of open causal LMs.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what is going on")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for mod in COMMAND_MODULES:
        try:
            importlib.import_module(mod).register(sub)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    return p


def one_line(message: str) -> str:
    """A message as one terminal line: whitespace runs (newlines of a library's multi-paragraph
    error) become one space, other control and bidi characters (from file names) escapes."""
    return visible(" ".join(message.split()))


def _join_dash_values(argv: list[str]) -> list[str]:
    """`--shard -1/2`: argparse takes a value starting with "-" for an option and says only
    "expected one argument"; joined as `--shard=-1/2` it reaches the range check instead."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _DASH_VALUE_FLAGS and arg.startswith("-") and arg[1:2].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


_DASH_VALUE_FLAGS = ("--shard",)


def main(argv: list[str] | None = None) -> int:
    with signals.installed():  # SIGTERM unwinds like SIGINT; neither is lost (see signals.py)
        code = _main(argv)
        if code == 0 and signals.pending() is not None:  # its exception was dropped on the way
            return _signalled(signals.pending())
        return code


def _signalled(signum: int) -> int:
    if signum == signal.SIGTERM:
        print("actscope: terminated (SIGTERM)", file=sys.stderr)
        return Terminated.exit_code
    print("actscope: interrupted", file=sys.stderr)
    return 130


def _main(argv: list[str] | None) -> int:
    argv = _join_dash_values(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except UserError as e:
        print(f"actscope: error: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        print(f"actscope: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except Terminated:
        return _signalled(signal.SIGTERM)
    except KeyboardInterrupt:
        return _signalled(signal.SIGINT)
    except BrokenPipeError:  # `actscope card RUN | head`: the reader left; not an error
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (silence the flush at exit)
        return 0


if __name__ == "__main__":
    sys.exit(main())
