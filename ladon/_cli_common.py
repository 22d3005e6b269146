"""What every ``ladon`` subcommand and ``python -m`` entry point shares: model options, guarded running, paths.

A subcommand is a module with ``HELP`` (one line), ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(args) -> int``; :mod:`ladon.cli` registers it, :func:`main_for` gives it a standalone ``main``. Every
:class:`~ladon.errors.LadonError` and unreadable file ends the command with one ``error: ...`` line on stderr and
exit status :data:`EXIT_ERROR` (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LadonError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .model import LadonModel

EXIT_ERROR = 2
"""Exit status of every command that fails on bad input, a usage error or an unreadable file."""
RANDOM_WEIGHTS_WARNING = ("WARNING: --random-weights: using an untrained model (build_model(seed=0)); "
                          "its outputs are meaningless")


def add_model_options(parser: argparse.ArgumentParser, what: str) -> None:
    """Add the mutually exclusive ``--model PATH`` / ``--random-weights`` options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", metavar="PATH", help=f"Ladon model file ({what})")
    group.add_argument("--random-weights", action="store_true",
                       help="use an untrained model built with seed 0 instead (outputs are meaningless)")


def check_model_options(args: argparse.Namespace) -> None:
    """Refuse to run without a model unless random weights were asked for explicitly; warn when they were."""
    if args.model is None and not args.random_weights:
        raise UsageError("no model given: pass --model PATH (a file written by `ladon convert` or training), "
                         "or --random-weights to run an untrained model whose outputs are meaningless")
    if args.random_weights:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)


def load_full_model(args: argparse.Namespace) -> LadonModel:
    """The model named by ``--model``, or the seed-0 random model for ``--random-weights`` (checked options)."""
    from .model import build_model, load_model

    return build_model(seed=0) if args.random_weights else load_model(args.model)


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` to torch (validated)."""
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def unique_path(directory: Path, stem: str, suffix: str, used: set[Path]) -> Path:
    """``directory/stem+suffix``, with ``-1``, ``-2``... appended when an earlier input of this run took it."""
    path, n = directory / f"{stem}{suffix}", 0
    while path in used:
        n += 1
        path = directory / f"{stem}-{n}{suffix}"
    used.add(path)
    return path


def run_guarded(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; report Ladon errors and unreadable files as one ``error:`` line with exit status 2."""
    try:
        return int(func(args))
    except LadonError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
    return EXIT_ERROR


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """Parse ``argv``; ``--help``, ``--version`` and usage errors give their exit status instead of raising."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR


def main_for(prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], int]) -> Callable[[Sequence[str] | None], int]:
    """A standalone ``main(argv) -> exit status`` for a subcommand module (``python -m ...``)."""

    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        add_arguments(parser)
        args = parse_args(parser, argv)
        return args if isinstance(args, int) else run_guarded(run, args)

    main.__doc__ = f"Entry point of ``{prog}``; returns the exit status."
    return main
