"""What every ``ladon`` subcommand and ``python -m`` entry point shares: model options, guarded running, paths.

A subcommand is a module with ``HELP`` (one line), ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(args) -> int``; :mod:`ladon.cli` registers it, :func:`main_for` gives it a standalone ``main``. Every
:class:`~ladon.errors.LadonError` and unreadable file ends the command with one ``error: ...`` line on stderr and
exit status :data:`EXIT_ERROR` (no traceback).
"""

from __future__ import annotations

import argparse
import os
import secrets
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LadonError, OutputExistsError, UnsafeOutputError, UsageError

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


def add_force_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--force``: allow replacing output files of an earlier run."""
    parser.add_argument("--force", action="store_true",
                        help="replace existing output files (without it, an existing output is an error)")


def output_dir(path: str | os.PathLike[str]) -> Path:
    """Create (with parents) the output directory the user named and return it; a symlink the *user* names is
    their choice and is used, but what exists there must be a directory."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UnsafeOutputError(f"output directory {path} exists and is not a directory") from None
    return path


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise UnsafeOutputError(f"output name {name!r} must be one plain file name inside the output directory")


def output_subdir(directory: Path, name: str) -> Path:
    """``directory/name`` as a real directory (created if missing); a symlink planted there is refused."""
    _check_name(name)
    path = directory / name
    try:
        os.mkdir(path)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):  # a symlink (even to a directory) or a file
            raise UnsafeOutputError(f"{path} exists and is not a real directory (symlinks are not followed)") from None
    return path


def safe_output_path(directory: str | os.PathLike[str], name: str, force: bool) -> Path:
    """The path of a new output file ``name`` inside ``directory``, checked before anything is computed:
    ``name`` must be one plain file name; an existing entry is an :class:`~ladon.errors.OutputExistsError`
    unless ``force`` (then :func:`write_output` *replaces* it, a symlink included, and never writes through it);
    an existing directory is always refused."""
    _check_name(name)
    path = Path(directory) / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeOutputError(f"output {path} is a directory")
    if not force:
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"
        raise OutputExistsError(f"output {path} already exists ({kind}); pass --force to replace it")
    return path


def write_output(directory: str | os.PathLike[str], name: str, data: bytes | str, *, force: bool) -> Path:
    """Write ``data`` to ``directory/name`` without following symlinks: a new file is created exclusively
    (``O_EXCL | O_NOFOLLOW``, so a file or link that appeared meanwhile is an error); with ``force`` the data goes to
    a fresh temporary file that is then renamed over the old entry (a planted symlink is replaced, its target
    untouched)."""
    path = safe_output_path(directory, name, force)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, 0o666)
        except FileExistsError:
            raise OutputExistsError(f"output {path} already exists; pass --force to replace it") from None
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        return path
    tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_output(directory: str | os.PathLike[str], name: str, writer: Callable[[Path], None], *,
                force: bool) -> Path:
    """Like :func:`write_output` for writers that need a path (``torch.save``): ``writer`` fills a fresh temporary
    file in ``directory``, which is then renamed over ``name`` (``force``) or hard-linked to it (fails if anything,
    a symlink included, exists there)."""
    path = safe_output_path(directory, name, force)
    tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
    try:
        writer(tmp)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"output {path} already exists; pass --force to replace it") from None
    finally:
        tmp.unlink(missing_ok=True)
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
