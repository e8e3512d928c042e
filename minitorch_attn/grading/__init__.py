"""The grader: graded tests per exercise, a score table, and the student edition (``make student``).

``minitorch_attn.grade("2.1")`` (or a lesson number, or nothing for all) runs the
graded tests in a fresh Python process, so it always sees the files as saved,
prints the score table and returns it as a :class:`Grades` dict.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

_ROOT = pathlib.Path(__file__).resolve().parents[2]


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

    Runs ``python -m minitorch_attn.grading`` in a new process: the code you saved
    is what gets graded, and a crash or endless loop cannot take this kernel down.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    with tempfile.TemporaryDirectory() as scratch:
        output = pathlib.Path(scratch) / "grades.json"
        command = [sys.executable, "-m", "minitorch_attn.grading", "--json", str(output), "--quiet"]
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
