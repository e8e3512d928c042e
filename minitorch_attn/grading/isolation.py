"""Grade one exercise at a time: every other exercise runs its trusted stand-in."""
from __future__ import annotations

import contextlib
import functools
import importlib
import pathlib
import re

from ..exercise import REGISTRY, overridden

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
_DECORATOR = re.compile(r"""^[ \t]*@exercise\(\s*["']([^"']+)["']""", re.MULTILINE)


@functools.cache
def exercise_modules() -> dict[str, str]:
    """``{exercise id: module}`` found in the source (once per process).

    A text search, not a parse: a module with a syntax error is still found, and
    importing it then reports the error where the student can read it.
    """
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.parent.name == "grading":
            continue
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for exercise_id in _DECORATOR.findall(path.read_text(encoding="utf-8")):
            found[exercise_id] = module
    return found


def load_exercises() -> dict:
    """Import every module that defines an exercise; returns ``{module: error}`` for those that fail.

    A module that does not import (a student's syntax error) only takes its own
    exercises, and whatever imports it, down with it.
    """
    errors = {}
    for module in sorted(set(exercise_modules().values())):
        try:
            importlib.import_module(module)
        except Exception as error:
            errors[module] = error
    return errors


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
    errors = load_exercises()
    if exercise_id not in REGISTRY:
        module = exercise_modules().get(exercise_id)
        if module in errors:
            raise errors[module]
        raise LookupError(f"unknown exercise {exercise_id!r}; the package defines {', '.join(sorted(REGISTRY))}")
    with overridden(trusted_replacements(exercise_id)):
        yield
