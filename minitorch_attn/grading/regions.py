"""Where the exercises are in the source: ``@exercise`` functions and their solution regions.

Standard library only: ``make student`` and the grader both read the package
source with it, and neither may depend on the exercises being importable.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import pathlib
import re

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
_DECORATOR = re.compile(r"""^[ \t]*@exercise\(\s*["']([^"']+)["']""", re.MULTILINE)

# Built from parts so that this file's own lines never look like a marker.
_MARKER = re.compile(r"^(?P<indent>[ \t]*)# (?P<kind>BEGIN|END) " + "SOLUTION" + r"[ \t]*$")
_INSTRUCTOR = re.compile(r"^[ \t]*(?:#|<!--)[ \t]*(?P<kind>BEGIN|END) INSTRUCTOR " + "ONLY" + r"[ \t]*(?:-->)?[ \t]*$")


class RegionError(ValueError):
    """A solution or instructor-only region that ``make student`` cannot replace safely."""


@dataclasses.dataclass(frozen=True)
class ExerciseFunction:
    id: str
    task: str
    name: str
    first_line: int  # 1-based, the ``def`` line
    last_line: int


@dataclasses.dataclass(frozen=True)
class SolutionRegion:
    exercise: ExerciseFunction
    begin: int  # 0-based index of the BEGIN line
    end: int  # 0-based index of the END line
    indent: str

    def stub(self) -> str:
        """The line that replaces the region in the student edition."""
        message = f"Exercise {self.exercise.id}: {self.exercise.task}"
        quoted = '"' + message.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{self.indent}raise NotImplementedError({quoted})\n"


def _exercise_call(decorator):
    """``(id, task)`` when ``decorator`` is ``exercise("id", "task")`` (or ``x.exercise(...)``), else None."""
    if not isinstance(decorator, ast.Call):
        return None
    func = decorator.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    args = decorator.args
    if name != "exercise" or len(args) < 2:
        return None
    if not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args[:2]):
        return None
    return args[0].value, args[1].value


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def exercise_functions(source: str, filename: str = "<source>") -> list[ExerciseFunction]:
    """Every function in ``source`` decorated with ``@exercise("id", "task")``, in source order."""
    if "exercise(" not in source:  # the common case: skip parsing
        return []
    found = []
    for node in _functions(ast.parse(source, filename)):
        for decorator in node.decorator_list:
            call = _exercise_call(decorator)
            if call:
                found.append(ExerciseFunction(call[0], call[1], node.name, node.lineno, node.end_lineno))
    return sorted(found, key=lambda f: f.first_line)


def _owner(tree, functions, begin, where):
    """The exercise a region starting on 1-based line ``begin`` belongs to.

    Either the innermost ``@exercise`` function around it, or, for a region in a
    helper (a Numba loop the exercise launches), the one ``@exercise`` function
    of the module that calls that helper by name.
    """
    # A function's last line is its last statement: the END comment may come after it.
    around = [f for f in functions if f.first_line <= begin <= f.last_line]
    if around:
        return max(around, key=lambda f: f.first_line)
    helpers = [n for n in _functions(tree) if n.lineno <= begin <= n.end_lineno]
    if not helpers:
        raise RegionError(f"{where}: solution region outside any function")
    helper = max(helpers, key=lambda n: n.lineno).name
    callers = []
    for node in _functions(tree):
        exercise = next((f for f in functions if f.first_line == node.lineno and f.name == node.name), None)
        if exercise and any(isinstance(n, ast.Name) and n.id == helper for n in ast.walk(node)):
            callers.append(exercise)
    if len(callers) != 1:
        raise RegionError(f"{where}: solution region in {helper}, which is called by {len(callers)} @exercise "
                          "functions of this module (it needs exactly one, or the region inside the exercise)")
    return callers[0]


def solution_regions(source: str, filename: str = "<source>") -> list[SolutionRegion]:
    """The ``# BEGIN/END SOLUTION`` regions of ``source``, each attributed to one exercise (see :func:`_owner`).

    Raises :class:`RegionError` for an unpaired or nested marker, a region that
    belongs to no exercise, an exercise without a region, or a region whose END is
    indented differently from its BEGIN.
    """
    lines = source.splitlines(keepends=True)
    functions = exercise_functions(source, filename)
    tree = ast.parse(source, filename) if functions else None
    regions, open_line = [], None
    for index, line in enumerate(lines):
        match = _MARKER.match(line.rstrip("\r\n"))
        if not match:
            continue
        where = f"{filename}:{index + 1}"
        if match["kind"] == "BEGIN":
            if open_line is not None:
                raise RegionError(f"{where}: BEGIN SOLUTION inside the region opened at line {open_line + 1}")
            open_line, indent = index, match["indent"]
            continue
        if open_line is None:
            raise RegionError(f"{where}: END SOLUTION without a BEGIN SOLUTION")
        if match["indent"] != indent:
            raise RegionError(f"{where}: END SOLUTION is indented differently from its BEGIN (line {open_line + 1})")
        if tree is None:
            raise RegionError(f"{filename}:{open_line + 1}: solution region in a module without @exercise functions")
        owner = _owner(tree, functions, open_line + 1, f"{filename}:{open_line + 1}")
        regions.append(SolutionRegion(owner, open_line, index, indent))
        open_line = None
    if open_line is not None:
        raise RegionError(f"{filename}:{open_line + 1}: BEGIN SOLUTION is never closed")
    covered = {r.exercise for r in regions}
    for function in functions:
        if function not in covered:
            raise RegionError(f"{filename}:{function.first_line}: exercise {function.id} ({function.name}) "
                              f"has no BEGIN/END SOLUTION region")
    return regions


def strip_solutions(source: str, filename: str = "<source>") -> str:
    """``source`` with every solution region replaced by its ``raise NotImplementedError(...)`` line."""
    lines = source.splitlines(keepends=True)
    for region in reversed(solution_regions(source, filename)):
        lines[region.begin : region.end + 1] = [region.stub()]
    return "".join(lines)


def solution_text(source: str, exercise_id: str, filename: str = "<source>") -> str:
    """The lines inside exercise ``exercise_id``'s region (markers excluded), as written."""
    lines = source.splitlines(keepends=True)
    for region in solution_regions(source, filename):
        if region.exercise.id == exercise_id:
            return "".join(lines[region.begin + 1 : region.end])
    raise KeyError(f"no solution region for exercise {exercise_id} in {filename}")


def strip_instructor_only(text: str, filename: str = "<text>") -> str:
    """``text`` without its ``BEGIN/END INSTRUCTOR ONLY`` blocks (markers included).

    The markers are comment lines: ``# BEGIN INSTRUCTOR ONLY`` (Makefile, Python,
    YAML) or ``<!-- BEGIN INSTRUCTOR ONLY -->`` (Markdown).
    """
    kept, open_line = [], None
    for index, line in enumerate(text.splitlines(keepends=True)):
        match = _INSTRUCTOR.match(line.rstrip("\r\n"))
        if match and match["kind"] == "BEGIN":
            if open_line is not None:
                raise RegionError(f"{filename}:{index + 1}: nested BEGIN INSTRUCTOR ONLY")
            open_line = index
        elif match:
            if open_line is None:
                raise RegionError(f"{filename}:{index + 1}: END INSTRUCTOR ONLY without a BEGIN")
            open_line = None
        elif open_line is None:
            kept.append(line)
    if open_line is not None:
        raise RegionError(f"{filename}:{open_line + 1}: BEGIN INSTRUCTOR ONLY is never closed")
    return "".join(kept)



@functools.cache
def exercise_files() -> dict[str, tuple[str, pathlib.Path]]:
    """``{exercise id: (module, file)}`` found in this edition's package source (once per process).

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
            found[exercise_id] = (module, path)
    return found


def exercise_modules() -> dict[str, str]:
    """``{exercise id: module}``, see :func:`exercise_files`."""
    return {exercise_id: module for exercise_id, (module, _) in exercise_files().items()}
