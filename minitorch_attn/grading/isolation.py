"""Grade one exercise at a time (in the student's process): every other exercise runs its trusted stand-in."""
from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import sys

from ..exercise import REGISTRY
from .regions import _exercise_call, exercise_modules, solution_regions


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


def trusted_replacements(exercise_id) -> dict:
    """``{other id: trusted function}`` for every registered exercise but ``exercise_id`` (None: all)."""
    from .trusted import TRUSTED

    missing = sorted(set(REGISTRY) - set(TRUSTED))
    if missing:
        raise LookupError(f"no trusted implementation for exercise(s) {', '.join(missing)}: "
                          "add one to minitorch_attn/grading/trusted.py")
    return {other: TRUSTED[other] for other in REGISTRY if other != exercise_id}


def _edit_region(source, exercise_id, edits, path):
    regions = [r for r in solution_regions(source, path) if r.exercise.id == exercise_id]
    if len(regions) != 1:
        raise LookupError(f"exercise {exercise_id} has {len(regions)} solution regions in {path}")
    lines = source.splitlines(keepends=True)
    begin, end = regions[0].begin, regions[0].end
    body = "".join(lines[begin + 1 : end])
    for old, new in edits:
        if body.count(old) != 1:
            raise LookupError(f"exercise {exercise_id}: {old!r} occurs {body.count(old)} times in the solution "
                              "region (it must occur once): update the edit")
        body = body.replace(old, new)
    return "".join(lines[: begin + 1]) + body + "".join(lines[end:]), begin + 1


def _without_caching(decorator):
    """A Numba decorator with cache=False: a function compiled from a string has no file to cache against."""
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg == "cache":
                keyword.value = ast.copy_location(ast.Constant(False), keyword.value)
    return decorator


def edited_exercise(exercise_id: str, edits):
    """Exercise ``exercise_id``'s function with its solution region edited (``[(old, new), ...]``).

    The exercise function (and the helper holding the region, if the region sits
    in one, such as a Numba loop) is compiled into a copy of its module's
    namespace; the module keeps its own functions. The planted mistakes of
    ``tests/grading_mutants.py`` are made this way.
    """
    entry = REGISTRY[exercise_id]
    module = sys.modules[entry.module]
    path = inspect.getsourcefile(module)
    edited, region_line = _edit_region(pathlib.Path(path).read_text(encoding="utf-8"), exercise_id, edits, path)
    tree = ast.parse(edited, path)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    holder = max((n for n in functions if n.lineno <= region_line + 1 <= n.end_lineno), key=lambda n: n.lineno)
    exercise_function = next(n for n in functions if n.name == entry.function.__name__)
    chosen = [holder] if holder is exercise_function else [holder, exercise_function]
    for node in chosen:
        node.decorator_list = [_without_caching(d) for d in node.decorator_list if not _exercise_call(d)]
    namespace = dict(vars(module))
    exec(compile(ast.Module(body=chosen, type_ignores=[]), path, "exec"), namespace)
    return namespace[exercise_function.name]
