"""The grader is tested (instructor-only: ``make student`` leaves this file out).

(a) the reference earns every point; (b) the student edition imports, every
graded test fails with its own exercise's NotImplementedError and the score is
0; completing one exercise earns exactly its points while a broken or hanging
one fails alone; (c) every planted mistake (tests/grading_mutants.py) is caught.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from grading_mutants import MUTANTS, run_mutants
from minitorch_attn.exercise import REGISTRY
from minitorch_attn.grading import Grades, edition, grade, runner
from minitorch_attn.grading.isolation import load_exercises
from minitorch_attn.grading.regions import (
    RegionError, solution_regions, solution_text, strip_instructor_only, strip_solutions,
)
from minitorch_attn.grading.trusted import TRUSTED

ROOT = pathlib.Path(__file__).resolve().parents[1]
MUTANTS_SCRIPT = pathlib.Path(__file__).with_name("grading_mutants.py")


@pytest.fixture(scope="module")
def registry():
    assert load_exercises() == {}
    return REGISTRY


@pytest.fixture(scope="module")
def collected(registry):
    """Every graded test, collected, not run."""
    return runner.run(collect_only=True)


@pytest.fixture(scope="module")
def possible(collected):
    """Points possible per exercise and in total."""
    return {row["id"]: row["possible"] for row in collected.exercises()} | {"total": collected.possible}


@pytest.fixture(scope="module")
def elsewhere(collected):
    """Exercises whose tests need the CUDA simulator, which this process lacks (they run in a child)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return set()
    return {t.exercise for t in collected.tests if t.cudasim}


# --------------------------------------------------------------------------
# Every exercise is covered
# --------------------------------------------------------------------------
def test_every_exercise_has_graded_tests_a_trusted_stand_in_and_two_mutants(registry, possible):
    ids = set(registry)
    graded = {i for i, points in possible.items() if i != "total" and points > 0}
    assert graded == ids, f"exercises without graded tests: {sorted(ids - graded)}; unknown ids: {sorted(graded - ids)}"
    assert set(TRUSTED) == ids, f"trusted stand-ins missing for {sorted(ids - set(TRUSTED))}"
    planted = {i: sum(m.exercise == i for m in MUTANTS) for i in ids}
    assert all(n >= 2 for n in planted.values()), f"fewer than 2 planted mistakes: {planted}"


# --------------------------------------------------------------------------
# (a) the reference solutions earn every point; so do the trusted stand-ins
# --------------------------------------------------------------------------
def test_reference_solutions_earn_every_point(registry, possible):
    report = runner.run()
    failures = [f"{t.exercise} {t.name}: {t.message}" for t in report.tests if not t.passed]
    assert not failures and not report.problems, failures + report.problems
    assert report.earned == report.possible == possible["total"] > 0
    # grades.json holds what the table shows
    data = json.loads(json.dumps(report.to_json()))
    assert data["total"] == {"earned": report.earned, "possible": report.possible}
    assert all({"id", "earned", "possible", "status"} <= set(row) and row["status"] == "passed"
               for row in data["exercises"])
    assert runner.Report.from_json(data).table() == report.table()


def test_trusted_stand_ins_pass_the_graded_tests(registry, elsewhere):
    # (an override cannot reach the simulator's child process)
    chosen = sorted(set(registry) - elsewhere, key=runner.exercise_key)
    report = runner.run(chosen, overrides={i: TRUSTED[i] for i in chosen})
    failures = [f"{t.exercise} {t.name}: {t.message}" for t in report.tests if not t.passed]
    assert not failures and not report.problems, failures + report.problems


# --------------------------------------------------------------------------
# (c) every planted mistake is caught
# --------------------------------------------------------------------------
def test_every_planted_mistake_is_caught(registry, elsewhere, record_property):
    results = [(m.exercise, m.mistake, caught, message)
               for m, caught, message in run_mutants([i for i in registry if i not in elsewhere])]
    if elsewhere:
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        done = subprocess.run([sys.executable, str(MUTANTS_SCRIPT), *sorted(elsewhere)], env=env, cwd=ROOT,
                              capture_output=True, text=True, check=True)
        for line in done.stdout.splitlines():
            row = json.loads(line)
            results.append((row["exercise"], row["mistake"], row["caught"], row["message"]))
    caught = sum(r[2] for r in results)
    # Shown at the end of the pytest run (tests/conftest.py prints "summary" properties).
    record_property("summary", f"mutation score: {caught}/{len(results)} planted mistakes caught "
                               f"({100 * caught / max(len(results), 1):.0f}%)")
    assert len(results) == len(MUTANTS)
    survivors = [f"{exercise} {mistake}" for exercise, mistake, ok, _ in results if not ok]
    assert not survivors, f"planted mistakes the graded tests miss: {survivors}"


# --------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------
SOURCE = textwrap.dedent('''\
    @exercise("8.1", 'say "hi" \\\\ twice')
    def greet(name):
        prefix = "hi"
        # BEGIN SOLUTION
        return prefix + name
        # END SOLUTION


    def _loop(values):
        if values:
            # BEGIN SOLUTION
            return sum(values)
            # END SOLUTION
        return 0


    @exercise("8.2", "sum with a helper")
    def total(values):
        return _loop(values)
    ''')


def test_regions_are_replaced_at_their_indentation_by_their_own_exercise():
    stripped = strip_solutions(SOURCE)
    assert '    raise NotImplementedError("Exercise 8.1: say \\"hi\\" \\\\ twice")\n' in stripped
    assert '        raise NotImplementedError("Exercise 8.2: sum with a helper")\n' in stripped
    namespace = {"exercise": lambda exercise_id, task: lambda function: function}
    exec(compile(stripped, "<edition>", "exec"), namespace)
    with pytest.raises(NotImplementedError, match=r'^Exercise 8.1: say "hi" \\ twice$'):
        namespace["greet"]("x")
    with pytest.raises(NotImplementedError, match="^Exercise 8.2: sum with a helper$"):
        namespace["total"]([1])
    assert solution_text(SOURCE, "8.2").strip() == "return sum(values)"


@pytest.mark.parametrize("broken, complaint", [
    ("    # BEGIN SOLUTION\n", "END SOLUTION without a BEGIN"),
    ("        # END SOLUTION\n", "never closed"),
])
def test_unpaired_markers_are_refused(broken, complaint):
    source = SOURCE.replace(broken, "", 1)
    with pytest.raises(RegionError, match=complaint):
        solution_regions(source, "broken.py")


def test_a_region_must_belong_to_an_exercise():
    with pytest.raises(RegionError, match="without @exercise"):
        solution_regions("def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n")
    with pytest.raises(RegionError, match="has no BEGIN/END SOLUTION region"):
        solution_regions('@exercise("8.3", "t")\ndef f():\n    return 1\n')


def test_instructor_only_blocks_are_removed():
    makefile = "grade:\n\trun\n# BEGIN INSTRUCTOR ONLY\nstudent:\n\tmake it\n# END INSTRUCTOR ONLY\nlab:\n"
    assert strip_instructor_only(makefile) == "grade:\n\trun\nlab:\n"
    readme = "# Course\n<!-- BEGIN INSTRUCTOR ONLY -->\n## For instructors\n<!-- END INSTRUCTOR ONLY -->\nend\n"
    assert strip_instructor_only(readme) == "# Course\nend\n"
    with pytest.raises(RegionError, match="never closed"):
        strip_instructor_only("# BEGIN INSTRUCTOR ONLY\n")


def test_notebooks_keep_their_cells_and_lose_their_outputs():
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Lesson 2"]},
                          {"cell_type": "code", "execution_count": 3, "metadata": {}, "outputs": [{"text": "3/3"}],
                           "source": ["minitorch_attn.grade(\"2.1\")"]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    result = json.loads(edition.student_version("notebooks/02.ipynb", json.dumps(notebook).encode()))
    assert [c["source"] for c in result["cells"]] == [c["source"] for c in notebook["cells"]]
    assert result["cells"][1]["outputs"] == [] and result["cells"][1]["execution_count"] is None


# --------------------------------------------------------------------------
# (b) the student edition
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def student_edition(tmp_path_factory):
    dest = tmp_path_factory.mktemp("editions") / "student"
    edition.write_edition(dest)
    return dest


def _python(edition_dir, *arguments, timeout=600):
    # The edition's own package must be the one imported: the current directory comes first on sys.path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_ENABLE_CUDASIM")}
    return subprocess.run([sys.executable, *arguments], cwd=edition_dir, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_student_edition_has_no_solutions_and_no_instructor_files(student_edition, registry):
    files = {p.relative_to(student_edition).as_posix() for p in student_edition.rglob("*") if p.is_file()}
    assert not (student_edition / ".git").exists()
    assert not files & set(edition.INSTRUCTOR_ONLY_PATHS)
    assert not any(part in (".venv", "__pycache__") for f in files for part in f.split("/"))
    stubs = {}
    for path in student_edition.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not any(line.strip() in ("# BEGIN SOLUTION", "# END SOLUTION") for line in text.splitlines()), path
        for line in text.splitlines():
            for exercise_id in registry:
                if line.strip().startswith(f'raise NotImplementedError("Exercise {exercise_id}: '):
                    stubs[exercise_id] = path
    assert set(stubs) == set(registry)
    makefile = (student_edition / "Makefile").read_text()
    assert "\ngrade:" in makefile and "\nstudent:" not in makefile


def test_student_edition_is_deterministic(student_edition, tmp_path):
    again = tmp_path / "again"
    edition.write_edition(again)
    edition.write_edition(again)  # a second run replaces its own earlier output

    def contents(folder):
        return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
                for p in sorted(folder.rglob("*")) if p.is_file()}

    assert contents(again) == contents(student_edition)
    (tmp_path / "someone-elses").mkdir()
    (tmp_path / "someone-elses" / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not a student edition"):
        edition.write_edition(tmp_path / "someone-elses")


def test_student_edition_imports_its_own_package_and_scores_zero(student_edition, possible):
    where = _python(student_edition, "-c", "import minitorch_attn; print(minitorch_attn.__file__)")
    assert where.returncode == 0, where.stderr
    assert pathlib.Path(where.stdout.strip()).is_relative_to(student_edition)
    done = _python(student_edition, "-m", "minitorch_attn.grading", "--json", "grades.json")
    assert done.returncode == 0, done.stdout + done.stderr
    grades = json.loads((student_edition / "grades.json").read_text())
    assert not grades["problems"]
    assert grades["total"] == {"earned": 0, "possible": possible["total"]}
    for row in grades["exercises"]:
        assert row["possible"] == possible[row["id"]]
        for test in row["tests"]:
            assert (test["exception"], test["message"]) == ("NotImplementedError", "not implemented yet"), test
    assert "Total" in done.stdout and "Traceback" not in done.stdout


# Long enough for a slow first test on a busy machine; a hanging exercise costs this once.
HANG_TIMEOUT = 12


def _complete(edition_dir, exercise_id, body):
    """Put ``body`` (the region's lines) in place of exercise ``exercise_id``'s NotImplementedError."""
    for path in (edition_dir / "minitorch_attn").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        for index, line in enumerate(lines):
            if line.strip().startswith(f'raise NotImplementedError("Exercise {exercise_id}: '):
                lines[index] = body
                path.write_text("".join(lines), encoding="utf-8")
                return
    raise LookupError(exercise_id)


def test_one_completed_exercise_earns_exactly_its_points(student_edition, possible, tmp_path):
    work = tmp_path / "student"
    shutil.copytree(student_edition, work)
    backend = (ROOT / "minitorch_attn" / "backends" / "numpy_backend.py").read_text(encoding="utf-8")
    _complete(work, "2.1", solution_text(backend, "2.1"))
    _complete(work, "3.1", "    return grad\n")  # broken: the wrong shape
    _complete(work, "3.2", "    while True:\n        pass\n")  # hangs: the per-test timeout stops it
    # `make grade` as a student runs it, with this interpreter standing in for the edition's .venv.
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed-test").touch()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_ENABLE_CUDASIM", "MAKEFLAGS")}
    command = ["make", "--no-print-directory", "grade", f"VENV={venv}", f"PY={sys.executable}",
               f"GRADE_TIMEOUT={HANG_TIMEOUT}"]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    grades = json.loads((work / "grades.json").read_text())
    rows = {row["id"]: row for row in grades["exercises"]}
    assert rows["2.1"]["status"] == "passed", rows["2.1"]
    assert rows["2.1"]["earned"] == possible["2.1"]
    assert grades["total"]["earned"] == rows["2.1"]["earned"]
    assert "has shape" in rows["3.1"]["message"] and rows["3.1"]["earned"] == 0
    messages = [t["message"] for t in rows["3.2"]["tests"]]
    assert messages[0].startswith(f"stopped after {HANG_TIMEOUT} s"), messages
    assert all(m.startswith("not run") for m in messages[1:]), messages
    table_line = next(line for line in done.stdout.splitlines() if line.startswith("2.1"))
    assert f"{rows['2.1']['earned']}/{rows['2.1']['possible']}" in table_line.replace(" ", "")


# --------------------------------------------------------------------------
# The notebook entry point
# --------------------------------------------------------------------------
def test_grade_runs_a_lesson_in_a_fresh_process(capsys, possible):
    result = grade(1)
    shown = capsys.readouterr().out
    assert isinstance(result, Grades) and [row["id"] for row in result["exercises"]] == ["1.1", "1.2"]
    assert result.passed and result.earned == possible["1.1"] + possible["1.2"]
    assert "1.1" in shown and "Total" in shown
