"""The three tasks a Ladon server runs, in canonical order (dependency-free: ROS adapters and launchers use it)."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import UnknownTaskError

TASKS: tuple[str, ...] = ("classification", "detection", "segmentation")


def normalize_tasks(tasks: Iterable[str] | str) -> tuple[str, ...]:
    """Validate task names and return them in canonical order, without duplicates."""
    requested = {tasks} if isinstance(tasks, str) else set(tasks)
    unknown = requested - set(TASKS)
    if unknown:
        raise UnknownTaskError(f"unknown task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")
    return tuple(t for t in TASKS if t in requested)
