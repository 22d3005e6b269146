"""The ``ladon`` command: one registry of subcommands, each a module with the same four names.

A subcommand module has ``HELP`` (one line), ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``
(see :mod:`ladon._cli_common`). Every :class:`~ladon.errors.LadonError` and unreadable file ends the command with
one ``error: ...`` line on stderr and exit status 2 (no traceback). The split-computing benchmark, which runs ROS 2
nodes, is its own command (``ladon-bench-split``, package ``ladon_bench``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._cli_common import EXIT_ERROR, parse_args, run_guarded
from ._version import __version__
from .errors import UsageError

SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    # (name, module, the extra its imports need); a missing extra leaves the other subcommands working
    ("encode", "ladon.commands.encode", "server"),
    ("infer", "ladon.commands.infer", "server"),
    ("convert", "ladon.commands.convert", "server"),
    ("keygen", "ladon.commands.keygen", ""),  # torch-free: works on a robot install
    ("set", "ladon.commands.model_set", "server"),
    ("bench", "ladon.bench", "server"),
    ("synth", "ladon.datasets.synth", "train"),
    ("train", "ladon.train.pipeline", "train"),
    ("eval", "ladon.evaluation.evaluate", "train"),
    ("export-encoder", "ladon.export", "export"),
    ("replay", "ladon.replay", "record"),
)


def _missing_extra(name: str, extra: str, error: ImportError):
    def run(args: argparse.Namespace) -> int:
        raise UsageError(f"`ladon {name}` needs the '{extra}' extra (pip install 'ladon_bringup[{extra}]'): {error}")

    return run


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ladon`` command (imports each subcommand's module)."""
    parser = argparse.ArgumentParser(prog="ladon", description="Ladon split-computing perception (WACV 2025).")
    parser.add_argument("--version", action="version", version=f"ladon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, extra in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if not extra:
                raise
            p = sub.add_parser(name, help=f"(needs the '{extra}' extra)", add_help=False)
            p.add_argument("ignored", nargs=argparse.REMAINDER)  # so that the run explains what is missing
            p.set_defaults(func=_missing_extra(name, extra, exc))
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ladon`` console script; returns the exit status."""
    args = parse_args(build_parser(), list(sys.argv[1:] if argv is None else argv))
    return args if isinstance(args, int) else run_guarded(args.func, args)


__all__ = ["EXIT_ERROR", "SUBCOMMANDS", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
