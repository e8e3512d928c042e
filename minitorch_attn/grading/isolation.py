"""Grade one exercise at a time: every other exercise runs its trusted stand-in."""
from __future__ import annotations

import contextlib
import functools
import importlib
import pathlib
import re

from ..exercise import REGISTRY, overridden

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
_DECORATOR = re.compile(r"^[ \t]*@exercise\(", re.MULTILINE)


@functools.cache
def exercise_modules() -> tuple[str, ...]:
    """The modules that define exercises, found in the source (once per process).

    A text search, not a parse: a module with a syntax error is still found, and
    importing it then reports the error where the student can read it.
    """
    modules = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.parent.name != "grading" and _DECORATOR.search(path.read_text(encoding="utf-8")):
            parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return tuple(modules)


def load_exercises() -> dict:
    """Import every module that defines an exercise, so the registry is complete."""
    for module in exercise_modules():
        importlib.import_module(module)
    return REGISTRY


def trusted_replacements(exercise_id: str) -> dict:
    """``{other id: trusted function}`` for every registered exercise but ``exercise_id``."""
    from .trusted import TRUSTED

    missing = sorted(set(REGISTRY) - set(TRUSTED))
    if missing:
        raise LookupError(f"no trusted implementation for exercise(s) {', '.join(missing)}: "
                          "add one to minitorch_attn/grading/trusted.py")
    return {other: TRUSTED[other] for other in REGISTRY if other != exercise_id}


@contextlib.contextmanager
def isolate(exercise_id: str):
    """Within the block, only exercise ``exercise_id`` runs this edition's (the student's) code."""
    load_exercises()
    if exercise_id not in REGISTRY:
        raise LookupError(f"unknown exercise {exercise_id!r}; the package defines {', '.join(sorted(REGISTRY))}")
    with overridden(trusted_replacements(exercise_id)):
        yield
