"""Run the graded tests (tests/graded) with pytest and turn the outcomes into a score report.

Each graded test carries ``@pytest.mark.exercise("2.1", points=3)``. A test earns
its points when it passes; an exercise's score is the sum over its tests. A
failure becomes one line (the assertion's message, "not implemented yet", a
timeout, or the exception and the line of the package that raised it).

Tests marked ``cudasim`` need ``NUMBA_ENABLE_CUDASIM=1`` before numba is first
imported; when this process lacks it they run in a child process that has it.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

from ..exercise import REGISTRY, overridden
from .isolation import load_exercises
from .report import GradedOutcome, Report, exercise_key

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
ROOT = PACKAGE_DIR.parent
GRADED_TESTS = ROOT / "tests" / "graded"
DEFAULT_TIMEOUT = 30  # seconds per test: generous for numba's first compile, short for an endless loop


def selects(exercise_id: str, selection) -> bool:
    """Whether ``selection`` (ids like "2.1" and lessons like "2" or 2; empty: all) includes ``exercise_id``."""
    if not selection:
        return True
    wanted = {str(s) for s in selection}
    return exercise_id in wanted or exercise_id.split(".")[0] in wanted


def exercise_marker(item):
    """``(id, points)`` of a graded test item, or None for an unmarked item."""
    marker = item.get_closest_marker("exercise")
    if marker is None:
        return None
    exercise_id = marker.args[0] if marker.args else marker.kwargs.get("id")
    points = marker.args[1] if len(marker.args) > 1 else marker.kwargs.get("points")
    return exercise_id, points


def _origin(excinfo) -> str:
    """``"numpy_backend.py:123 in linear_backward"``: the deepest frame in the package outside the grader."""
    entries = list(excinfo.traceback)
    ours = [e for e in entries if str(e.path).startswith(str(PACKAGE_DIR))
            and not str(e.path).startswith(str(PACKAGE_DIR / "grading"))]
    entry = (ours or entries)[-1]
    return f"{pathlib.Path(str(entry.path)).name}:{entry.lineno + 1} in {entry.name}"


def failure_line(excinfo, exercise_id: str, timeout: float) -> str:
    """The one line the score table shows for a failed test."""
    error = excinfo.value
    first = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, NotImplementedError):
        own = first.startswith(f"Exercise {exercise_id}:")
        return "not implemented yet" if own else f"NotImplementedError: {first}"
    if isinstance(error, pytest.fail.Exception) and first.startswith("Timeout"):
        return f"stopped after {timeout:g} s: an endless loop, or far too slow?"
    if isinstance(error, (AssertionError, pytest.fail.Exception)) and first:  # the graded checks' one line
        return first
    if isinstance(error, SyntaxError):  # its message already names the file and line
        return f"{type(error).__name__}: {first}"
    return f"{type(error).__name__}: {first} ({_origin(excinfo)})"


class _Collector:
    """A pytest plugin object: selects graded items, records outcomes and one-line failures."""

    def __init__(self, selection, timeout, cudasim_here, cudasim_only):
        self.selection, self.timeout = selection, timeout
        self.cudasim_here, self.cudasim_only = cudasim_here, cudasim_only
        self.outcomes: dict[str, GradedOutcome] = {}
        self.deferred: list[str] = []  # ids whose cudasim tests must run in a child process
        self.problems: list[str] = []
        self.timed_out: set[str] = set()

    def pytest_collection_modifyitems(self, config, items):
        keep, drop = [], []
        for item in items:
            marker = exercise_marker(item)
            chosen = marker is not None and selects(marker[0], self.selection)
            simulated = item.get_closest_marker("cudasim") is not None
            if chosen and simulated and not self.cudasim_here:
                self.deferred.append(marker[0])
                chosen = False
            if chosen and self.cudasim_only and not simulated:
                chosen = False
            (keep if chosen else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep
        for item in keep:
            exercise_id, points = exercise_marker(item)
            simulated = item.get_closest_marker("cudasim") is not None
            self.outcomes[item.nodeid] = GradedOutcome(item.name, exercise_id, points, False, cudasim=simulated)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        exercise_id = exercise_marker(item)[0]
        if exercise_id in self.timed_out:
            pytest.fail(f"not run: an earlier test of exercise {exercise_id} was stopped after {self.timeout:g} s")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        outcome = self.outcomes.get(item.nodeid)
        if outcome is None:
            return
        if report.when == "call" and report.passed:
            outcome.passed = True
        if report.failed and call.excinfo is not None and not outcome.message:
            outcome.passed = False
            outcome.message = failure_line(call.excinfo, outcome.exercise, self.timeout)
            outcome.exception = type(call.excinfo.value).__name__
            if outcome.message.startswith("stopped after"):
                self.timed_out.add(outcome.exercise)

    def pytest_collectreport(self, report):
        if report.failed:
            lines = [line for line in str(report.longrepr).splitlines() if line.strip()]
            self.problems.append(f"could not collect {report.nodeid}: {lines[-1].strip() if lines else ''}")


def _graded_files(tests_dir: pathlib.Path, selection) -> list[str]:
    """The test files that mention a selected exercise (all of them for an empty selection): less to collect."""
    if not selection:
        return [str(tests_dir)]
    wanted = [f'exercise("{s}' + ("" if "." in s else ".") for s in selection]
    files = [str(p) for p in sorted(tests_dir.glob("test_*.py"))
             if any(w in p.read_text(encoding="utf-8") for w in wanted)]
    return files or [str(tests_dir)]


def _pytest_arguments(tests_dir: pathlib.Path, selection, timeout: float, stop_early: bool,
                      collect_only: bool) -> list[str]:
    root = tests_dir.resolve().parents[1]
    return _graded_files(tests_dir, selection) + [
        "--rootdir", str(root), "-c", str(root / "pyproject.toml"), "-p", "no:cacheprovider",
        "-q", "--tb=no", "-rN", "--no-header", f"--timeout={timeout}"] + (
        ["-x"] if stop_early else []) + (["--collect-only"] if collect_only else [])


def _run_child_with_simulator(selection, tests_dir, timeout) -> Report:
    """Run the selected cudasim tests in a child process that has NUMBA_ENABLE_CUDASIM=1."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    # The child must import this very edition of the package, not some installed one.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    with tempfile.TemporaryDirectory() as scratch:
        output = pathlib.Path(scratch) / "grades.json"
        command = [sys.executable, "-m", "minitorch_attn.grading", "--cudasim-only", "--quiet",
                   "--json", str(output), "--tests", str(tests_dir), "--timeout", str(timeout), *selection]
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        if not output.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            return Report([], {}, [f"the CUDA simulator run failed (exit {done.returncode}): {' | '.join(tail)}"])
        return Report.from_json(json.loads(output.read_text()))


def run(selection=(), *, tests_dir=None, timeout=DEFAULT_TIMEOUT, overrides=None, cudasim_only=False,
        stop_early=False, collect_only=False) -> Report:
    """Run the graded tests of ``selection`` (exercise ids or lesson numbers; empty: all) in this process.

    ``overrides`` (``{id: function}``) replaces exercises for the run: the mutation
    tests plant mistakes this way. ``stop_early`` stops at the first failure (the
    tests after it are reported as not passed), enough to know a mistake is caught.
    ``collect_only`` runs nothing: the report lists every graded test, none passed
    (the points possible, cheaply).
    """
    tests_dir = pathlib.Path(tests_dir or GRADED_TESTS)
    selection = [str(s) for s in selection]
    # A module that does not import (a student's syntax error) is reported; its tests fail on the error.
    problems = [f"{module} does not import: {type(error).__name__}: {error}"
                for module, error in load_exercises().items()]
    # Collecting runs nothing, so the simulator's tests can be listed here too.
    cudasim_here = collect_only or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    collector = _Collector(selection, timeout, cudasim_here, cudasim_only)
    output = io.StringIO()
    with overridden(overrides or {}), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        arguments = _pytest_arguments(tests_dir, selection, timeout, stop_early, collect_only)
        code = pytest.main(arguments, plugins=[collector])
    tasks = {i: e.task for i, e in REGISTRY.items() if selects(i, selection)}
    report = Report(list(collector.outcomes.values()), {} if cudasim_only else tasks, problems + collector.problems)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED) \
            and not report.problems:
        tail = output.getvalue().strip().splitlines()[-3:]
        report.problems.append(f"pytest stopped (exit {int(code)}): {' | '.join(tail)}")
    deferred = sorted(set(collector.deferred), key=exercise_key)
    if deferred:
        if overrides and set(overrides) & set(deferred):
            raise ValueError(f"overrides for {sorted(set(overrides) & set(deferred))} cannot reach the CUDA "
                             "simulator's child process: run with NUMBA_ENABLE_CUDASIM=1")
        child = _run_child_with_simulator(deferred, tests_dir, timeout)
        report.tests += child.tests
        report.problems += child.problems
    return report
