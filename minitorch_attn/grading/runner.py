"""The judge: run the graded tests (tests/graded) with pytest, one student process per exercise, and score them.

Each graded test carries ``@pytest.mark.exercise("2.1", points=3)`` and takes the
``student`` fixture: ``student(function, *arrays)`` runs ``function`` (a function
of the test file) in the exercise's student process and returns plain data. The
test then compares it, here, with what PyTorch computes. A test earns its points
when it passes; an exercise's score is the sum over its tests. A failure becomes
one line (the check's message, "not implemented yet", what killed the process,
or the exception and the line of the package that raised it).

When run by ``python minitorch_attn/grading`` (``make grade``, ``grade()``), this
process never imports the student's package: only ``minitorch_attn/grading`` and
``minitorch_attn/testing.py`` (the comparison rule) are loaded (see ``__main__``).
"""
from __future__ import annotations

import contextlib
import io
import pathlib
import time

import pytest

from . import leaks
from .regions import exercise_files, exercise_functions
from .report import GradedOutcome, Report, exercise_key
from .student import RuleBroken, StudentError, StudentGone, StudentProcess

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


def source_problems(root=ROOT) -> dict[str, str]:
    """``{file: "SyntaxError at file:line: message"}`` for every package file that does not compile (nothing runs)."""
    found = {}
    for path in sorted((pathlib.Path(root) / "minitorch_attn").rglob("*.py")):
        shown = path.relative_to(root).as_posix()
        try:
            compile(path.read_bytes(), shown, "exec", dont_inherit=True)
        except SyntaxError as error:
            found[shown] = f"{type(error).__name__} at {shown}:{error.lineno}: {error.msg}"
    return found


def exercise_tasks() -> dict[str, str]:
    """``{id: task}`` read from the source (a file that does not parse gives no task text)."""
    tasks = {}
    for exercise_id, (_, path) in exercise_files().items():
        with contextlib.suppress(SyntaxError):
            tasks.update({f.id: f.task for f in exercise_functions(path.read_text("utf-8"), str(path))})
        tasks.setdefault(exercise_id, "")
    return tasks


def rule_problem(exercise_id: str) -> str | None:
    """The static half of the leak rule for exercise ``exercise_id`` (``None``: nothing found)."""
    module, path = exercise_files()[exercise_id]
    source = path.read_text("utf-8")
    try:
        name = next(f.name for f in exercise_functions(source, str(path)) if f.id == exercise_id)
        found = leaks.static_leaks(source, str(path), module, name, is_package=path.name == "__init__.py")
    except SyntaxError:
        return None  # reported as a syntax error
    if not found:
        return None
    return f"not allowed: {'; '.join(found)} (an exercise may not use another backend, the grader or PyTorch)"


def failure_line(error, exercise_id: str, excinfo=None) -> str:
    """The one line the score table shows for a failed test."""
    if isinstance(error, StudentError):
        if error.type_name == "NotImplementedError":
            own = error.message.startswith(f"Exercise {exercise_id}:")
            return "not implemented yet" if own else f"NotImplementedError: {error.message}"
        if error.type_name == "GradingFailure":  # a graded check that ran in the student's process
            return error.message
        return f"{error.type_name}: {error.message}" + (f" ({error.where})" if error.where else "")
    first = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, (StudentGone, RuleBroken)):
        return first
    if isinstance(error, (AssertionError, pytest.fail.Exception)) and first:  # the graded checks' one line
        return first
    where = ""
    if excinfo is not None:
        entry = list(excinfo.traceback)[-1]
        where = f" ({pathlib.Path(str(entry.path)).name}:{entry.lineno + 1} in {entry.name})"
    return f"{type(error).__name__}: {first}{where}"


class _Call:
    """What a graded test calls ``student``: runs a function of the test file in the student's process."""

    def __init__(self, process: StudentProcess, timeout: float):
        self.process, self.deadline = process, time.monotonic() + timeout

    def __call__(self, function, *args, **kwargs):
        return self.process.call(function, args, kwargs, self.deadline)


class Judge:
    """A pytest plugin: selects graded items, keeps one student process at a time, records outcomes."""

    def __init__(self, selection, timeout, replace=None, root=ROOT, pool=None):
        self.selection, self.timeout, self.replace, self.root = selection, timeout, replace or {}, root
        self.pool = pool  # {(exercise id, cudasim): live process} kept for the next run, or None
        self.outcomes: dict[str, GradedOutcome] = {}
        self.problems: list[str] = []
        self.gone: dict[str, str] = {}  # exercise id -> why its tests cannot run
        self.current: tuple[str, StudentProcess, bool] | None = None
        self.broken_files = source_problems(root)

    # -- the fixture's side --------------------------------------------------
    def student(self, exercise_id: str, cudasim: bool) -> _Call:
        if exercise_id in self.gone:
            raise StudentGone(self.gone[exercise_id])
        if self.current and self.current[0] != exercise_id:
            self.close()
        if self.current is None:
            module, path = exercise_files()[exercise_id]
            shown = path.relative_to(self.root).as_posix()
            if shown in self.broken_files:
                raise StudentGone(self.broken_files[shown])
            problem = rule_problem(exercise_id) if exercise_id not in self.replace else None
            if problem:
                raise RuleBroken(problem)
            kept = self.pool.pop((exercise_id, cudasim), None) if self.pool is not None else None
            if kept is not None:
                kept.reset(self.replace.get(exercise_id))
                process = kept
            else:
                process = StudentProcess(exercise_id, timeout=self.timeout, cudasim=cudasim,
                                         replace=self.replace.get(exercise_id), root=self.root)
            if process.import_error:
                error = process.import_error
                raise StudentGone(f"could not import the package: {error['type']}: {error['message']}"
                                  + (f" ({error['where']})" if error["where"] else ""))
            self.current = (exercise_id, process, cudasim)
        return _Call(self.current[1], self.timeout)

    def close(self):
        if self.current:
            exercise_id, process, cudasim = self.current
            if self.pool is not None and not process.gone and exercise_id not in self.gone:
                self.pool[exercise_id, cudasim] = process
            else:
                process.close()
            self.current = None

    # -- pytest hooks ---------------------------------------------------------
    def pytest_configure(self, config):
        config.stash[JUDGE] = self

    def pytest_collection_modifyitems(self, config, items):
        keep, drop = [], []
        for item in items:
            marker = exercise_marker(item)
            (keep if marker is not None and selects(marker[0], self.selection) else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        keep.sort(key=lambda item: exercise_key(exercise_marker(item)[0]))  # one process per exercise, in turn
        items[:] = keep
        for item in keep:
            exercise_id, points = exercise_marker(item)
            self.outcomes[item.nodeid] = GradedOutcome(item.name, exercise_id, points, False)

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
            error = call.excinfo.value
            outcome.message = failure_line(error, outcome.exercise, call.excinfo)
            outcome.exception = error.type_name if isinstance(error, StudentError) else type(error).__name__
            if isinstance(error, StudentGone):
                outcome.error = True
                if outcome.exercise not in self.gone:  # the first test that met it: the rest are not run
                    self.gone[outcome.exercise] = f"not run: {outcome.message}"
                    self.close()

    def pytest_collectreport(self, report):
        if report.failed:
            lines = [line for line in str(report.longrepr).splitlines() if line.strip()]
            self.problems.append(f"could not collect {report.nodeid}: {lines[-1].strip() if lines else ''}")

    def pytest_sessionfinish(self):
        self.close()


#: Where the graded tests' ``student`` fixture finds the judge (absent: not run by the grader).
JUDGE = pytest.StashKey[Judge]()


def _graded_files(tests_dir: pathlib.Path, selection) -> list[str]:
    """The test files that mention a selected exercise (all of them for an empty selection): less to collect."""
    if not selection:
        return [str(tests_dir)]
    wanted = [f'exercise("{s}' + ("" if "." in s else ".") for s in selection]
    files = [str(p) for p in sorted(tests_dir.glob("test_*.py"))
             if any(w in p.read_text(encoding="utf-8") for w in wanted)]
    return files or [str(tests_dir)]


def _pytest_arguments(tests_dir: pathlib.Path, selection, stop_early: bool, collect_only: bool) -> list[str]:
    root = tests_dir.resolve().parents[1]
    return _graded_files(tests_dir, selection) + [
        "--rootdir", str(root), "-c", str(root / "pyproject.toml"), "--confcutdir", str(tests_dir),
        "-p", "no:cacheprovider", "-p", "no:timeout", "-q", "--tb=no", "-rN", "--no-header"] + (
        ["-x"] if stop_early else []) + (["--collect-only"] if collect_only else [])


def run(selection=(), *, tests_dir=None, timeout=DEFAULT_TIMEOUT, replace=None, stop_early=False,
        collect_only=False, pool=None) -> Report:
    """Grade ``selection`` (exercise ids or lesson numbers; empty: all); this process only judges.

    ``replace`` (``{id: "trusted"}`` or ``{id: [(old, new), ...]}``) runs the
    trusted stand-in, or the solution region with those edits, instead of the
    package's exercise: the grader's own tests and planted mistakes use it.
    ``stop_early`` stops at the first failure (the tests after it are reported
    as not passed), enough to know a mistake is caught. ``collect_only`` runs
    nothing: the report lists every graded test, none passed (the points possible).
    ``pool`` (a dict the caller closes with :func:`close_pool`) keeps the student
    processes for the next run, which then only swaps the exercise's version.
    """
    tests_dir = pathlib.Path(tests_dir or GRADED_TESTS)
    selection = [str(s) for s in selection]
    judge = Judge(selection, timeout, replace, pool=pool)
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            code = pytest.main(_pytest_arguments(tests_dir, selection, stop_early, collect_only),
                               plugins=[judge])
    finally:
        judge.close()
    known = exercise_tasks()
    tasks = {i: t for i, t in known.items() if selects(i, selection)}
    problems = [] if collect_only else list(judge.broken_files.values())
    report = Report(list(judge.outcomes.values()), tasks, problems + judge.problems)
    unknown = [s for s in selection if not any(selects(i, [s]) for i in known)]
    if unknown:
        ids = ", ".join(sorted(known, key=exercise_key))
        report.problems.append(f"no exercise or lesson {', '.join(unknown)} (the exercises are {ids})")
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED) \
            and not report.problems:
        tail = output.getvalue().strip().splitlines()[-3:]
        report.problems.append(f"pytest stopped (exit {int(code)}): {' | '.join(tail)}")
    return report


def close_pool(pool: dict) -> None:
    """End the student processes that :func:`run` kept in ``pool``."""
    while pool:
        pool.popitem()[1].close()
