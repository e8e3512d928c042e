"""The student edition as a student meets it: its README, its backends, its lessons' and tests' waiting lines."""
import ast
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from minitorch_attn.grading import edition
from minitorch_attn.lessons import markdown_docstring, ready, unfinished_exercise, unfinished_exercise_in

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    dest = tmp_path_factory.mktemp("edition") / "student"
    edition.write_edition(dest)
    return dest


def _run(folder, code, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(folder))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# ---- the reference backend's exercise kernels and their twins ------------------------------------------------
REFERENCE = '''
from ..exercise import exercise

def forward(x):
    return x

@exercise("1.1", "task")
def backward(g, shape):
    return g

def fused_backward(g, shape):
    return backward(g, shape) + forward(g)

def _helper(x):
    return backward(x, None)
'''

OTHER = '''
def _only_for_twin(x):
    return x

def _launched_by_a_stub(x):
    return x

def _shared(x):
    return x

def forward(x):
    """kept: its reference version is no exercise"""
    return _shared(x)

@decorator(parallel=True)
def backward(g, shape):
    """the twin of exercise 1.1: it would show the answer"""
    return _only_for_twin(_shared(g))

def fused_backward(g, shape):
    return backward(g, shape)
'''


def test_exercise_kernels_are_the_exercises_and_the_public_kernels_that_call_them():
    assert edition.exercise_kernels(REFERENCE) == {"backward": ["1.1"], "fused_backward": ["1.1"]}


def test_twins_become_imports_of_the_students_numpy_function_and_their_helpers_go():
    other = "minitorch_attn/backends/fast/kernels.py"
    texts = {edition.REFERENCE_BACKEND: REFERENCE, other: OTHER, "tests/test_x.py": "import minitorch_attn\n"}
    result = edition.without_twins(texts)[other]
    tree = ast.parse(result)
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert defined == {"_launched_by_a_stub", "_shared", "forward"}
    imports = [(n.module, [a.name for a in n.names]) for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert imports == [("minitorch_attn.backends.numpy_backend", ["backward"]),
                       ("minitorch_attn.backends.numpy_backend", ["fused_backward"])]
    assert "show the answer" not in result and "@decorator" not in result


# ---- the edition as written ----------------------------------------------------------------------------------
def test_edition_readme_is_the_student_quick_start(student):
    readme = (student / "README.md").read_text()
    assert readme == (ROOT / "STUDENT_README.md").read_text()
    assert not (student / "STUDENT_README.md").exists()
    quick_start = readme.index("## Quick start")
    assert quick_start < readme.index("make grade") and "make lab" in readme[quick_start:readme.index("## The exercises")]
    assert "bench:start" not in readme


def test_edition_ships_no_instructor_checks_and_no_solution(student):
    shipped = {str(p.relative_to(student)) for p in student.rglob("*") if p.is_file()}
    assert not [p for p in shipped if p.startswith(("tests/test_grading", "tests/grading_", "tests/test_edition"))]
    assert {"tests/graded/conftest.py", "minitorch_attn/grading/__init__.py"} <= shipped
    marker = re.compile(r"^[ \t]*(?:#|<!--)[ \t]*(?:BEGIN|END) (?:SOLUTION|INSTRUCTOR ONLY)", re.MULTILINE)
    for path in shipped:
        if path.endswith((".py", ".md", "Makefile")):
            assert not marker.search((student / path).read_text()), path


def test_edition_fast_backends_run_the_students_numpy_code(student):
    out = _run(student, """
        import importlib
        from minitorch_attn import backends
        numpy_module = backends.BACKEND_MODULES["numpy"]
        for name in ("numba", "cuda"):   # imported, not run: the CUDA module imports without a GPU
            module = importlib.import_module(backends.BACKEND_MODULES[name])
            for kernel in ("global_avg_pool_backward", "linear_backward", "conv2d_backward",
                           "global_avg_max_pool_backward", "residual_gate_backward"):
                assert getattr(module, kernel).__module__ == numpy_module, (name, kernel)
            assert getattr(module, "residual_gate_forward").__module__ != numpy_module
        print("deferred")
    """)
    assert "deferred" in out


def test_a_lesson_cell_waits_with_one_line_and_a_test_is_skipped_with_the_exercise(student):
    out = _run(student, """
        from minitorch_attn.lessons import ready
        print(ready("1.1", "2.1"))
    """)
    lines = out.strip().splitlines()
    assert lines[-1] == "False" and len(lines) == 2
    assert "exercise 1.1 (then 2.1)" in lines[0] and "minitorch_attn/backends/numpy_backend.py" in lines[0]
    probe = student / "tests" / "test_probe_waiting.py"
    probe.write_text("import numpy as np\nfrom minitorch_attn import Tensor, ops\n\n\ndef test_needs_1_1():\n"
                     "    x = Tensor(np.ones((1, 2, 3, 3)), requires_grad=True)\n"
                     "    ops.global_avg_pool(x).backward(np.ones((1, 2)))\n")
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", str(probe), "-q", "-rs", "-p", "no:cacheprovider"],
                              cwd=student, env=dict(os.environ, PYTHONPATH=str(student)), capture_output=True,
                              text=True, timeout=120)
    finally:
        probe.unlink()
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 skipped" in done.stdout and "waits for exercise 1.1 (global_avg_pool_backward" in done.stdout


def test_the_makefile_leaves_graded_tests_to_make_grade_in_the_edition_only(student):
    assert "TEST_PATHS := tests notebooks --ignore=tests/graded" in (student / "Makefile").read_text()
    assert "TEST_PATHS := tests notebooks\n" in (ROOT / "Makefile").read_text()


# ---- the helpers ----------------------------------------------------------------------------------------------
def test_ready_is_silent_where_the_exercises_are_written(capsys):
    assert ready("1.1", "9.1")
    assert capsys.readouterr().out == ""


def test_unfinished_exercise_looks_through_wrapped_errors():
    try:
        try:
            raise NotImplementedError("Exercise 2.1: backward of y = x W^T + b")
        except NotImplementedError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        found = unfinished_exercise(outer)
    assert found.startswith("exercise 2.1 (linear_backward in minitorch_attn/backends/numpy_backend.py")
    assert unfinished_exercise(NotImplementedError("not an exercise")) is None
    assert unfinished_exercise(ValueError("Exercise 2.1: looks like one")) is None


def test_unfinished_exercise_in_a_child_process_traceback_or_a_table():
    traceback = 'File "x.py", line 3\nNotImplementedError: Exercise 3.1: backward of the channel-wise mean'
    table = "[('conv2d', [\"NotImplementedError('Exercise 3.3: ...')\"]), ('linear', \"NotImplementedError('Exercise 2.1: x')\")]"
    assert unfinished_exercise_in(traceback).startswith("exercise 3.1 (channel_mean_backward")
    assert unfinished_exercise_in(table).startswith("exercise 2.1 (linear_backward")   # the first in course order
    assert unfinished_exercise_in("AssertionError: Exercise 2.1: mentioned, not raised") is None


def test_docstrings_are_shown_as_markdown_math():
    text = markdown_docstring("""Conv: :math:`y = Wx`, see :func:`conv2d` and ``groups``.

        .. math:: y[n] = \\sum_c W[c]
                  x[c]
        """)
    assert text == "Conv: $y = Wx$, see `conv2d` and `groups`.\n\n\n$$\ny[n] = \\sum_c W[c] x[c]\n$$"


def test_submodules_after_a_bare_import_without_importing_them_early():
    out = _run(ROOT, """
        import sys
        import minitorch_attn as mt
        early = sorted(m for m in ("minitorch_attn.nn", "minitorch_attn.models") if m in sys.modules)
        block = mt.nn.CBAM(8, reduction_ratio=4)
        print(early, type(block).__name__, mt.ops.global_avg_pool.__name__, mt.models.ResNet.__name__)
    """)
    assert out.split() == ["[]", "CBAM", "global_avg_pool", "ResNet"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_student_who_solved_every_exercise_passes_the_editions_tests(tmp_path, monkeypatch):
    """The edition with every solution left in place, as a student who has solved all the exercises has it:
    its default tests (not the graded ones, which ``make grade`` runs) pass. Tests of the fast backends' own
    checks and workspaces fail there if they are not instructor-only: the edition runs the student's NumPy
    code for each exercise's twins (three such tests were found this way)."""
    monkeypatch.setattr(edition, "strip_solutions", lambda text, path: text)
    solved = tmp_path / "solved"
    edition.write_edition(solved)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "-m",
                           "not slow and not gpu and not cudasim", "tests", "--ignore=tests/graded"],
                          cwd=solved, env=dict(os.environ, PYTHONPATH=str(solved)), capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:]
