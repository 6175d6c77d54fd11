"""The `vbnf` command. Each subcommand lives in the module that does its work, which exposes
`add_arguments(parser)` and `run(args) -> int`; only the chosen one is imported (so `vbnf info` never loads a window
library). A user-facing failure (VbnfError) prints one line and exits 2; Ctrl-C exits 130.
Log lines of the engine (loggers under "vbnf", level INFO and up: e.g. which renderer runs and why) go to stderr,
one line each, prefixed with the command.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("engine.train_cli", "train a field on a data set (Blender or instant-ngp format)"),
    "eval": ("engine.evaluate", "PSNR and SSIM of a model on a data set's test split, per LOD"),
    "render": ("engine.render_cli", "render a model to a PNG without a window"),
    "info": ("engine.fileformat_cli", "header, bitrate ladder and stored metrics of a .vbnf file"),
    "convert": ("engine.convert", "re-quantise a model: dense -> k-means VQ, vq -> fewer bits"),
    "view": ("viewer.app", "open the interactive viewer (default: the bundled model)"),
    "compare": ("viewer.compare", "write a labelled contact sheet comparing LODs and bitwidths"),
    "make-scene": ("engine.scenes", "generate a procedural multi-view data set (Blender format)"),
}


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
    top = argparse.ArgumentParser(prog="vbnf", description="Variable Bitrate Neural Fields: train, compress, view.")
    top.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        top.parse_args(argv[:1])  # prints the usage error and exits 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"vbnf {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    show_engine_log(name)
    from engine.errors import VbnfError
    try:
        return int(module.run(args) or 0)
    except VbnfError as e:
        print(f"vbnf {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vbnf {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
