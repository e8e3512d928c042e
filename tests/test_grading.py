"""The grader is tested (instructor-only: ``make student`` leaves this file out).

(a) the reference earns every point; (b) the student edition imports, every
graded test fails with its own exercise's NotImplementedError and the score is
0; completing one exercise earns exactly its points while a broken, crashing,
exiting, hanging or leaking one fails alone, and student code cannot change the
score; (c) every planted mistake (tests/grading_mutants.py) is caught.
"""
import fnmatch
import inspect
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from grading_mutants import MUTANTS, run_mutants
from minitorch_attn.exercise import REGISTRY
from minitorch_attn.grading import Grades, edition, grade, leaks, runner, wire
from minitorch_attn.grading.isolation import load_exercises
from minitorch_attn.grading.regions import (
    RegionError, solution_regions, solution_text, strip_instructor_only, strip_solutions,
)
from minitorch_attn.grading.report import Report
from minitorch_attn.grading.trusted import TRUSTED

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Each judge run starts a process per exercise; on a busy 2-core machine one test here can take minutes.
pytestmark = pytest.mark.timeout(1800)


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


def test_trusted_stand_ins_take_the_exercises_arguments(registry):
    """A stand-in replaces the exercise in every call the library makes, keywords included."""
    differ = {i: (str(inspect.signature(TRUSTED[i])), str(inspect.signature(entry.function)))
              for i, entry in registry.items() if inspect.signature(TRUSTED[i]) != inspect.signature(entry.function)}
    assert not differ, differ


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
    assert Report.from_json(data).table() == report.table()


def test_trusted_stand_ins_pass_the_graded_tests(registry):
    report = runner.run(replace={i: "trusted" for i in registry})
    failures = [f"{t.exercise} {t.name}: {t.message}" for t in report.tests if not t.passed]
    assert not failures and not report.problems, failures + report.problems


# --------------------------------------------------------------------------
# (c) every planted mistake is caught
# --------------------------------------------------------------------------
def test_every_planted_mistake_is_caught(registry, record_property):
    results = [(m.exercise, m.mistake, caught, message) for m, caught, message in run_mutants()]
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
    assert not [f for f in files if any(fnmatch.fnmatchcase(f, p) for p in edition.INSTRUCTOR_ONLY_PATHS)]
    assert "tests/test_grading.py" not in files and "tests/grading_mutants.py" not in files
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
    done = _python(student_edition, "minitorch_attn/grading", "--json", "grades.json")
    assert done.returncode == 0, done.stdout + done.stderr
    grades = json.loads((student_edition / "grades.json").read_text())
    assert not grades["problems"]
    assert grades["total"] == {"earned": 0, "possible": possible["total"]}
    for row in grades["exercises"]:
        assert row["possible"] == possible[row["id"]]
        for test in row["tests"]:
            assert (test["exception"], test["message"]) == ("NotImplementedError", "not implemented yet"), test
    assert "Total" in done.stdout and "Traceback" not in done.stdout


# Per test; the package's import has a minute of its own, so a busy machine does not make this flaky.
HANG_TIMEOUT = 5


def _complete(edition_dir, exercise_id, body):
    """Put ``body`` (the region's lines) in place of exercise ``exercise_id``'s NotImplementedError."""
    for path in (edition_dir / "minitorch_attn").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        for index, line in enumerate(lines):
            if line.strip().startswith(f'raise NotImplementedError("Exercise {exercise_id}: '):
                indent = line[: len(line) - len(line.lstrip())]
                lines[index] = textwrap.indent(textwrap.dedent(body), indent)
                path.write_text("".join(lines), encoding="utf-8")
                return path
    raise LookupError(exercise_id)


def _student_env():
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_ENABLE_CUDASIM", "MAKEFLAGS")}


def _table_rows(stdout):
    """``{id: "earned/possible"}`` and the total, as the printed table shows them."""
    rows = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and re.fullmatch(r"\d+/\d+", fields[1]):
            rows[fields[0]] = fields[1]
    return rows


def _agrees(done, grades):
    shown = _table_rows(done.stdout)
    written = {row["id"]: f"{row['earned']}/{row['possible']}" for row in grades["exercises"]}
    written["Total"] = f"{grades['total']['earned']}/{grades['total']['possible']}"
    return shown == written


# Faults planted in one edition, each in its own exercise (`make grade EXERCISES="1 2 3 9.1"`).
FAULTS = {
    "1.1": "import ctypes\nctypes.string_at(0)\n",  # a segfault
    "1.2": "import os\nos._exit(0)\n",
    "2.2": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",  # what the OOM killer does
    # reaches the trusted stand-in through a module name built at run time (the call watch sees it)
    "3.1": "import importlib\nreturn importlib.import_module('minitorch_attn.grad' + 'ing.trusted')"
           ".channel_mean_backward(grad, shape)\n",
    # ... and into the Numba backend (in the edition its kernels of the same formulas run the student's own
    # NumPy code, so any other kernel stands in for the fused ones that hold those formulas)
    "3.2": "from . import kernels\nreturn kernels('nu' + 'mba').channel_max_forward(grad)[0]\n",
    # an import the judge reads before anything runs
    "3.3": "from ..grading.trusted import conv2d_backward as theirs\n"
           "return theirs(grad, x, weight, stride, padding, dilation, groups, has_bias)\n",
    "3.4": "return compressed\n",  # an ordinary wrong answer
    "9.1": "while True:\n    out[0, 0] += 1.0\n",  # an endless loop inside @njit(parallel=True) code
}


@pytest.fixture(scope="module")
def faulty_grades(student_edition, tmp_path_factory):
    """`make grade` as a student runs it, on an edition with 2.1 done and the FAULTS planted."""
    work = tmp_path_factory.mktemp("faults") / "student"
    shutil.copytree(student_edition, work)
    backend = (ROOT / "minitorch_attn" / "backends" / "numpy_backend.py").read_text(encoding="utf-8")
    _complete(work, "2.1", textwrap.dedent(solution_text(backend, "2.1")))
    for exercise_id, body in FAULTS.items():
        _complete(work, exercise_id, body)
    (work / "grades.json").write_text('{"an": "older file"}')
    # This interpreter stands in for the edition's .venv.
    venv = work.parent / "venv"
    venv.mkdir()
    (venv / ".installed-test").touch()
    command = ["make", "--no-print-directory", "grade", f"VENV={venv}", f"PY={sys.executable}",
               f"GRADE_TIMEOUT={HANG_TIMEOUT}", "EXERCISES=1 2 3 9.1"]
    done = subprocess.run(command, cwd=work, env=_student_env(), capture_output=True, text=True, timeout=900)
    grades = json.loads((work / "grades.json").read_text())
    return done, grades, {row["id"]: row for row in grades["exercises"]}


def test_faults_cost_only_their_own_exercise_and_make_grade_says_so(faulty_grades, possible):
    done, grades, rows = faulty_grades
    assert done.returncode != 0, "an exercise that could not be judged must fail `make grade`"
    assert _agrees(done, grades), done.stdout
    assert rows["2.1"]["status"] == "passed" and rows["2.1"]["earned"] == possible["2.1"], rows["2.1"]
    assert grades["total"]["earned"] == possible["2.1"]
    assert set(rows) == {"1.1", "1.2", "2.1", "2.2", "3.1", "3.2", "3.3", "3.4", "9.1"}
    assert all(row["possible"] == possible[i] for i, row in rows.items())


@pytest.mark.parametrize("exercise_id, start", [
    ("1.1", "crashed: segmentation fault at numpy_backend.py:"),
    ("1.2", "exited with status 0 before reporting"),
    ("2.2", "killed by SIGKILL (out of memory?)"),
    ("9.1", f"killed after {HANG_TIMEOUT} s: an endless loop"),
])
def test_a_crash_an_exit_a_kill_or_a_hang_is_named(faulty_grades, exercise_id, start):
    row = faulty_grades[2][exercise_id]
    messages = [t["message"] for t in row["tests"]]
    assert row["status"] == "error" and row["earned"] == 0, row
    assert messages[0].startswith(start), messages
    assert all(m.startswith("not run: " + start) for m in messages[1:]), messages


@pytest.mark.parametrize("exercise_id, found", [
    ("3.1", "calls minitorch_attn.grading.trusted.channel_mean_backward"),
    ("3.2", "calls minitorch_attn.backends.numba"),
    ("3.3", "imports minitorch_attn.grading.trusted.conv2d_backward"),
])
def test_a_solution_that_reaches_into_the_grader_or_another_backend_earns_nothing(faulty_grades, exercise_id,
                                                                                   found):
    row = faulty_grades[2][exercise_id]
    assert row["earned"] == 0 and row["status"] == "failed", row
    assert all(t["message"].startswith("not allowed: numpy_backend.py:") and found in t["message"]
               for t in row["tests"]), row["tests"]


def test_an_ordinary_wrong_answer_reads_as_before(faulty_grades):
    row = faulty_grades[2]["3.4"]
    assert row["status"] == "failed", row
    assert row["message"].endswith("the output has shape (2, 2, 9, 8), expected (2, 1, 9, 8)"), row


def _grade_edition(student_edition, tmp_path, edits, *selection):
    """Run the judge on a copy of the edition with ``edits`` ({path: text appended}); returns (done, grades)."""
    work = tmp_path / "student"
    shutil.copytree(student_edition, work)
    for path, change in edits.items():
        target = work / path
        target.write_text(change(target.read_text(encoding="utf-8")), encoding="utf-8")
    done = subprocess.run([sys.executable, "minitorch_attn/grading", "--json", "grades.json",
                           "--timeout", str(HANG_TIMEOUT), *selection],
                          cwd=work, env=_student_env(), capture_output=True, text=True, timeout=600)
    return done, json.loads((work / "grades.json").read_text())


NUMPY_BACKEND = "minitorch_attn/backends/numpy_backend.py"


def test_sys_exit_at_import_costs_the_exercise_and_is_reported(student_edition, tmp_path, possible):
    done, grades = _grade_edition(student_edition, tmp_path,
                                  {NUMPY_BACKEND: lambda text: text + "\nimport sys\nsys.exit(0)\n"}, "1.1")
    assert done.returncode == 1 and _agrees(done, grades), done.stdout + done.stderr
    (row,) = grades["exercises"]
    assert row["status"] == "error" and row["possible"] == possible["1.1"], row
    assert row["tests"][0]["message"].startswith("could not import the package: SystemExit: sys.exit(0) was "
                                                 "called (numpy_backend.py:"), row


def test_student_code_cannot_patch_the_report_or_rewrite_grades_json(student_edition, tmp_path, possible):
    cheat = textwrap.dedent("""
        import atexit, json, pathlib
        from ..grading import report as _report
        _report.Report.earned = property(lambda self: 999)
        _report.GradedOutcome.passed = True
        def _rewrite():
            pathlib.Path("grades.json").write_text(json.dumps({"total": {"earned": 999, "possible": 999}}))
        atexit.register(_rewrite)
        _rewrite()
        """)
    done, grades = _grade_edition(student_edition, tmp_path, {NUMPY_BACKEND: lambda text: text + cheat}, "1")
    assert done.returncode == 0 and _agrees(done, grades), done.stdout + done.stderr
    assert grades["total"] == {"earned": 0, "possible": possible["1.1"] + possible["1.2"]}
    assert all(t["message"] == "not implemented yet" for row in grades["exercises"] for t in row["tests"])


def test_a_syntax_error_lists_every_exercise_of_the_module_with_file_and_line(student_edition, tmp_path,
                                                                             possible):
    def break_cbam(text):
        lines = text.splitlines(keepends=True)
        broken = next(i for i, line in enumerate(lines) if 'raise NotImplementedError("Exercise 3.4' in line)
        lines[broken] = lines[broken].replace("raise NotImplementedError(", "return (", 1).rstrip() + " +\n"
        return "".join(lines)

    source = (student_edition / "minitorch_attn/nn/cbam.py").read_text(encoding="utf-8")
    line = next(i for i, text in enumerate(source.splitlines(), 1) if "Exercise 3.4" in text)
    done, grades = _grade_edition(student_edition, tmp_path, {"minitorch_attn/nn/cbam.py": break_cbam},
                                  "2", "3.4", "4")
    assert done.returncode == 1 and _agrees(done, grades), done.stdout + done.stderr
    rows = {row["id"]: row for row in grades["exercises"]}
    where = "SyntaxError at minitorch_attn/nn/cbam.py:"
    for exercise_id in ("2.2", "3.4", "4.1"):
        assert rows[exercise_id]["earned"] == 0 and rows[exercise_id]["possible"] == possible[exercise_id]
        assert rows[exercise_id]["tests"][0]["message"].startswith(where), rows[exercise_id]
    assert rows["2.1"]["tests"][0]["message"] == "not implemented yet", rows["2.1"]
    assert any(p.startswith(where) for p in grades["problems"]) and where in done.stdout
    assert abs(int(grades["problems"][0].split(":")[1]) - line) <= 1, grades["problems"]


# --------------------------------------------------------------------------
# The pieces of the judge
# --------------------------------------------------------------------------
def test_wire_carries_plain_data_and_names_everything_else():
    value = (np.arange(6, dtype=np.float32).reshape(2, 3), None, [1, 2.5, "x", True], {"eps": np.float64(1e-5)},
             object(), np.array(["text"]))
    back = wire.decode(wire.encode(value))
    assert back[0].dtype == np.float32 and np.array_equal(back[0], value[0])
    assert back[1:4] == (None, [1, 2.5, "x", True], {"eps": 1e-5})
    assert [wire.type_name(v) for v in back[4:]] == ["object", "ndarray of <U4"]


def test_the_static_rule_reads_imports_names_and_backend_picks():
    source = textwrap.dedent("""\
        import numpy as np
        from ..grading import trusted
        from . import numba_backend, kernels

        def helper(x):
            return trusted.f(x)

        def exercise(x):
            import torch
            y = np.sum(x) + kernels("numba").f(x) + numba_backend.g(x)
            return helper(y)
        """)
    found = leaks.static_leaks(source, "numpy_backend.py", "minitorch_attn.backends.numpy_backend", "exercise")
    assert [f.split(" ", 1)[1] for f in found] == [
        "uses minitorch_attn.grading.trusted", "imports torch", "picks the numba backend",
        "uses minitorch_attn.backends.numba_backend"], found
    # Numba's own exercise may use its backend (old and new layout), never the CUDA one.
    assert not leaks.is_forbidden("minitorch_attn.backends.numba.pooling",
                                  leaks.forbidden_prefixes("minitorch_attn.backends.numba_backend"))
    assert leaks.is_forbidden("minitorch_attn.backends.cuda.kernels",
                              leaks.forbidden_prefixes("minitorch_attn.backends.numba.pooling"))
    assert not leaks.is_forbidden("torchvision", leaks.ALWAYS_FORBIDDEN)


def test_the_judge_does_not_import_the_students_package(tmp_path):
    probe = textwrap.dedent("""\
        import runpy, sys
        sys.argv = ["grading", "--json", sys.argv[1], "1.1"]
        try:
            runpy.run_path("minitorch_attn/grading", run_name="__main__")
        except SystemExit:
            pass
        loaded = sorted(m for m in sys.modules if m.startswith("minitorch_attn")
                        and not m.startswith("minitorch_attn.grading") and m != "minitorch_attn.testing")
        print(loaded)
        """)
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "grades.json")], cwd=ROOT,
                          env=_student_env(), capture_output=True, text=True, timeout=600)
    assert done.stdout.strip().splitlines()[-1] == "['minitorch_attn']", done.stdout + done.stderr
    assert json.loads((tmp_path / "grades.json").read_text())["total"]["earned"] > 0


# --------------------------------------------------------------------------
# The notebook entry point
# --------------------------------------------------------------------------
def test_grade_runs_a_lesson_in_a_fresh_process(capsys, possible):
    result = grade(1)
    shown = capsys.readouterr().out
    assert isinstance(result, Grades) and [row["id"] for row in result["exercises"]] == ["1.1", "1.2"]
    assert result.passed and result.earned == possible["1.1"] + possible["1.2"]
    assert "1.1" in shown and "Total" in shown
