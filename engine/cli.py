"""The `vbnf` command. Each subcommand lives in the module that does its work, which exposes
`add_arguments(parser)` and `run(args) -> int`; only the chosen one is imported (so `vbnf info` never loads a window
library).

Every failure ends in ONE line on stderr (no traceback) through the single handler in `main`:
- a bad option (argparse, or a range check of engine/cli_checks.py): "vbnf X: error: ... (see vbnf X --help)", exit 2;
- a user-facing failure (VbnfError, which includes DataError and FormatError) or an OS error: one line, exit 2;
- anything else is a bug: "vbnf X: internal error: ...; please report it", exit 2 (the traceback only with
  VBNF_DEBUG=1 in the environment);
- Ctrl-C exits 130, SIGTERM 143; a closed output pipe (`vbnf info ... | head`) exits quietly.

Log lines of the engine (loggers under "vbnf", level INFO and up: e.g. which renderer runs and why) go to stderr,
one line each, prefixed with the command.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import warnings

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("engine.train_cli", "train a field on a data set (Blender or instant-ngp format)"),
    "eval": ("engine.evaluate", "PSNR and SSIM of a model on a data set's test split, per LOD"),
    "render": ("engine.render_cli", "render a model to a PNG without a window"),
    "info": ("engine.fileformat_cli", "header, bitrate ladder and stored metrics of a .vbnf file"),
    "convert": ("engine.convert", "re-quantise a model: dense -> k-means VQ, vq -> fewer bits"),
    "view": ("viewer.app", "open the interactive viewer (default: the bundled model)"),
    "compare": ("viewer.compare", "write a labelled contact sheet comparing LODs and bitwidths"),
    "make-scene": ("engine.scenes", "generate a procedural multi-view data set (Blender format)"),
    "warmup": ("viewer.warmup", "compile the CUDA kernels of the viewer and training ahead (kernel disk cache)"),
}
DEBUG_ENV = "VBNF_DEBUG"


class UsageError(Exception):
    """An argparse error, already turned into one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line ("vbnf X: error: ... (see vbnf X --help)") instead of usage + message;
    raised as UsageError so `main` prints it and returns 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        raise UsageError(f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class StderrLines(logging.Handler):
    """Writes each record as one line "vbnf COMMAND: message" to the current sys.stderr."""

    def __init__(self, command: str):
        super().__init__(logging.INFO)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        print(f"vbnf {self.command}: {record.getMessage()}", file=sys.stderr)


def show_engine_log(command: str) -> None:
    """Routes the "vbnf" loggers' INFO lines to stderr for this command (replacing an earlier call's handler)."""
    logger = logging.getLogger("vbnf")
    for handler in [h for h in logger.handlers if isinstance(h, StderrLines)]:
        logger.removeHandler(handler)
    logger.addHandler(StderrLines(command))
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = OneLineParser(prog="vbnf", description="Variable Bitrate Neural Fields: train, compress, view.")
    top.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if argv and argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if not argv:
        print(f"vbnf: error: give a command: {', '.join(COMMANDS)} (see vbnf --help)", file=sys.stderr)
        return 2
    name = argv[0] if argv[0] in COMMANDS else None
    prog = f"vbnf {name}" if name else "vbnf"
    try:
        if name is None:
            top.parse_args(argv[:1])  # raises the one-line UsageError
        module = importlib.import_module(COMMANDS[name][0])
        parser = OneLineParser(prog=prog, description=COMMANDS[name][1])
        module.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        show_engine_log(name)
        return _run_guarded(module, args, prog)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, or a command that exits itself
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


def _run_guarded(module, args, prog: str) -> int:
    """module.run(args) with every failure turned into one line on stderr (see the module docstring)."""
    from engine.errors import VbnfError
    previous = _sigterm_as_exit()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_note(prog)  # a partial model is said in one line, not as a warning
            return int(module.run(args) or 0)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except VbnfError as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    except MemoryError:
        print(f"{prog}: error: out of memory; try a smaller size, fewer levels or --device cpu", file=sys.stderr)
        return 2
    except OSError as e:
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"{prog}: error:{where} {_one_line(e.strerror or e)}; check the path and its permissions",
              file=sys.stderr)
        return 2
    except SystemExit:
        raise
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        text = _one_line(e)
        print(f"{prog}: internal error: {type(e).__name__}{': ' + text[:300] if text else ''}; please report it "
              f"(run with {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_exit():
    """Makes SIGTERM raise SystemExit(143) in the main thread, so `finally` blocks (temp-file cleanup) run;
    returns the previous handler (None when not on the main thread or no signals here)."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _exit_on_sigterm)
    except (ValueError, OSError, AttributeError):
        return None


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _quiet_broken_pipe() -> None:
    """The reader of stdout went away (`| head`): point stdout at /dev/null so the interpreter's final flush does not
    print a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _one_line_note(name: str):
    """A warnings.showwarning that prints a TruncatedModelWarning as `NAME: note: MESSAGE` (NAME: "vbnf CMD") (one line) and any
    other warning as Python does."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "TruncatedModelWarning":
            print(f"{name}: note: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


if __name__ == "__main__":
    sys.exit(main())
