"""The grader: graded tests per exercise, a score table, and the student edition (``make student``).

``minitorch_attn.grade("2.1")`` (or a lesson number, or nothing for all) runs the
judge, ``python minitorch_attn/grading``, in a fresh process, so it always sees
the files as saved; it prints the score table and returns it as a :class:`Grades` dict.

How an exercise is judged: the judge process never imports the student's package.
Per exercise it starts a student process (a process group of its own) that imports
the package, runs the graded calls with every other exercise replaced by its
trusted stand-in and sends back only plain arrays and exception texts; the judge
compares them with PyTorch, decides pass or fail and, when every student process
is gone, writes grades.json (atomically) from its own data. A test's calls have a
hard wall-clock limit (``--timeout``, 30 s) after which the whole process group is
killed; a crash, a kill, an exit or a hang costs that exercise's points only, and
the command exits with 1 when an exercise could not be judged.

The rule for solutions (checked for every exercise; a test that breaks it earns no
points): an exercise's code may use NumPy, the standard library and the rest of
minitorch_attn, but not PyTorch, the grader, or another backend. Precisely: before
anything runs, the judge reads X's exercise function and the functions of its module
that it calls; they may not import or name a module whose name starts with ``torch``,
``minitorch_attn.grading``, ``minitorch_attn.backends.numba`` or
``minitorch_attn.backends.cuda`` (except X's own backend: Numba for 9.1, CUDA for 9.2),
nor pick such a backend by name (``kernels("numba")``). And while X is graded, no
function of those modules but PyTorch's (which patches the standard library, so its
frames turn up under honest calls) may run when X's function, or a function defined
inside it, called it, directly or through other functions; what the stand-ins of the
other exercises do does not count.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

_ROOT = pathlib.Path(__file__).resolve().parents[2]
_JUDGE = pathlib.Path(__file__).resolve().parent  # run as a folder: see __main__.py


class Grades(dict):
    """The content of grades.json: ``{"exercises": [...], "total": {"earned": E, "possible": P}, ...}``."""

    @property
    def earned(self):
        return self["total"]["earned"]

    @property
    def possible(self):
        return self["total"]["possible"]

    @property
    def passed(self) -> bool:
        return self.possible > 0 and self.earned == self.possible and not self.get("problems")

    def __repr__(self):
        ids = ", ".join(row["id"] for row in self["exercises"])
        return f"<Grades {ids}: {self.earned}/{self.possible} points>"


def grade(*selection, timeout=None, show=True) -> Grades:
    """Grade exercises by id ("2.1") or lesson (2); with no argument, every exercise.

    Runs the judge in a new process: the code you saved is what gets graded, and a
    crash or endless loop cannot take this kernel down.
    """
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    with tempfile.TemporaryDirectory() as scratch:
        output = pathlib.Path(scratch) / "grades.json"
        command = [sys.executable, str(_JUDGE), "--json", str(output), "--quiet"]
        command += ["--timeout", str(timeout)] if timeout else []
        done = subprocess.run(command + [str(s) for s in selection], env=env, cwd=_ROOT,
                              capture_output=True, text=True)
        if not output.exists():
            raise RuntimeError(f"the grader did not run (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        grades = Grades(json.loads(output.read_text()))
    if show:
        from .report import Report

        print(Report.from_json(grades).table())
    return grades
