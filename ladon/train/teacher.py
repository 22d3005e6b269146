"""Transitional (#9): the teacher moved to :mod:`ladon.teacher`. Only ``ladon/splitbench/workloads.py`` still imports
it from here; delete this module once that file (moving to ``ladon_bench/workloads.py``) imports ``ladon.teacher``."""

from ..teacher import TEACHER_FORMAT, TEACHER_FORMAT_VERSION, TeacherModel, load_teacher, save_teacher

__all__ = ["TEACHER_FORMAT", "TEACHER_FORMAT_VERSION", "TeacherModel", "load_teacher", "save_teacher"]
