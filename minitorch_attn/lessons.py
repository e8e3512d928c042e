"""What a lesson asks before running a cell that needs your exercises.

In the student edition an exercise's body is ``raise NotImplementedError("Exercise 2.1: ...")``. A lesson cell
that calls it would end in a traceback; instead the cell starts with ``if ready("2.1"):`` and, while the
exercise is still that stub, prints one line saying which exercise to write first and where::

    from minitorch_attn.lessons import ready
    if ready("1.1", "1.2"):
        ...   # the cell's code

``ready`` looks at the functions this Python process has loaded, not at the file: after writing an exercise,
restart the kernel (or re-import) and the cell runs. In the instructor's edition every exercise is written and
``ready`` returns True without printing anything.

:func:`unfinished_exercise` does the same for an exception, :func:`unfinished_exercise_in` for the text of one
that happened elsewhere (a child process): the test suite turns such failures into skips.
:func:`doc` shows a docstring in a lesson with its formulas typeset instead of raw Sphinx markup.
"""
from __future__ import annotations

import importlib
import inspect
import pathlib
import re

_PACKAGE = pathlib.Path(__file__).resolve().parent
_STUB = re.compile(r"^Exercise (?P<id>\d+\.\d+): ")
_DECORATOR = re.compile(r"""@exercise\(\s*["'](?P<id>\d+\.\d+)["']""")


def _sort_key(exercise_id: str):
    return tuple(int(part) for part in exercise_id.split("."))


def _module_name(path: pathlib.Path) -> str:
    return ".".join(("minitorch_attn",) + path.relative_to(_PACKAGE).with_suffix("").parts)


def _entry(exercise_id: str):
    """The registry entry of ``exercise_id``, importing the module that defines it when needed."""
    from .exercise import REGISTRY

    if exercise_id not in REGISTRY:
        for path in sorted(_PACKAGE.rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if any(m["id"] == exercise_id for m in _DECORATOR.finditer(text)):
                importlib.import_module(_module_name(path))
                break
    if exercise_id not in REGISTRY:
        raise KeyError(f"ready: there is no exercise {exercise_id!r}")
    return REGISTRY[exercise_id]


def _constants(code):
    for constant in code.co_consts:
        if isinstance(constant, str):
            yield constant
        elif hasattr(constant, "co_consts"):
            yield from _constants(constant)


def _module_raises_stub(module, exercise_id: str) -> bool:
    """Whether a function of ``module`` (a Numba or CUDA kernel's Python source too) still holds the stub."""
    prefix = f"Exercise {exercise_id}: "
    for value in vars(module).values():
        # an @exercise function is a wrapper (functools.wraps: __wrapped__), a Numba kernel keeps py_func
        function = getattr(value, "py_func", value)
        if callable(function):
            function = inspect.unwrap(function)
        code = getattr(function, "__code__", None)
        if code is not None and any(s.startswith(prefix) for s in _constants(code)):
            return True
    return False


def where(exercise_id: str) -> str:
    """``"global_avg_pool_backward in minitorch_attn/backends/numpy_backend.py"``."""
    entry = _entry(exercise_id)
    return f"{entry.qualname} in {entry.module.replace('.', '/')}.py"


def pending(*exercise_ids: str) -> list[str]:
    """The exercises among ``exercise_ids`` whose loaded code is still the student edition's stub."""
    waiting = []
    for exercise_id in exercise_ids:
        entry = _entry(exercise_id)
        if _module_raises_stub(importlib.import_module(entry.module), exercise_id):
            waiting.append(exercise_id)
    return sorted(waiting, key=_sort_key)


def ready(*exercise_ids: str) -> bool:
    """True when every exercise named is written; otherwise print one line naming the first to do and where."""
    waiting = pending(*exercise_ids)
    if waiting:
        first = waiting[0]
        others = f" (then {', '.join(waiting[1:])})" if len(waiting) > 1 else ""
        print(f"⏸ This cell waits for exercise {first}{others}: write {where(first)}, then restart the kernel "
              "and run the lesson again.")
    return not waiting


_STUB_IN_TEXT = re.compile(r"NotImplementedError(?:: |\(['\"])Exercise (?P<id>\d+\.\d+): ")


def _described(exercise_id: str) -> str:
    try:
        return f"exercise {exercise_id} ({where(exercise_id)})"
    except KeyError:
        return f"exercise {exercise_id}"


def unfinished_exercise_in(text: str) -> str | None:
    """The first exercise stub named in ``text`` (a child process's traceback, a table of errors), else None."""
    found = sorted({m["id"] for m in _STUB_IN_TEXT.finditer(text)}, key=_sort_key)
    return _described(found[0]) if found else None


def unfinished_exercise(error: BaseException) -> str | None:
    """``"exercise 1.1 (global_avg_pool_backward in ...)"`` when ``error`` is an exercise's stub, else None.

    Looks through chained and grouped exceptions, since a test harness may wrap the original one.
    """
    seen, todo = set(), [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NotImplementedError):
            match = _STUB.match(str(current))
            if match:
                return _described(match["id"])
        todo += [current.__cause__, current.__context__, *getattr(current, "exceptions", ())]
    return None


_MATH_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)\n(?P<rest>(?:(?P=indent)[ \t]+.*\n|[ \t]*\n)*)",
                         re.MULTILINE)
_ROLE = re.compile(r":(?:func|class|meth|data|mod|attr|obj):`~?(?P<name>[^`]+)`")


def markdown_docstring(text: str) -> str:
    """A docstring written for Sphinx (``:math:``, ``.. math::``, ``:func:``) as Markdown with ``$...$`` math."""
    text = inspect.cleandoc(text) + "\n"

    def block(match):
        body = " ".join(line.strip() for line in [match["first"], *match["rest"].splitlines()] if line.strip())
        return f"\n$$\n{body}\n$$\n\n"

    text = _MATH_BLOCK.sub(block, text)
    text = re.sub(r":math:`([^`]+)`", r"$\1$", text)
    text = _ROLE.sub(lambda m: f"`{m['name']}`", text)
    return text.replace("``", "`").strip()


def doc(*objects) -> None:
    """Show the docstrings of ``objects`` with their formulas typeset (in Jupyter), under each one's name."""
    parts = []
    for thing in objects:
        name = getattr(thing, "__qualname__", None) or type(thing).__name__
        parts.append(f"**`{name}`** — " + markdown_docstring(thing.__doc__ or "(no docstring)"))
    text = "\n\n".join(parts)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:
        print(text)
