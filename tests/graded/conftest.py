"""Graded tests: each carries ``@pytest.mark.exercise("id", points=n)`` and takes the ``student`` fixture.

A test makes its inputs here, hands them to ``student(function, *args)``, which runs
``function`` (a function of the same file, importing the package inside its body)
in the exercise's student process, and compares what comes back with PyTorch here.
While a test of exercise X runs, every other exercise is replaced by its trusted
PyTorch stand-in, so X's score depends on X's code alone. Tests marked ``cudasim``
run in a student process with NUMBA_ENABLE_CUDASIM=1.

These tests run through the grader (``make grade``, ``python minitorch_attn/grading``,
``grade()``); a plain ``pytest`` run skips them.
"""
import pathlib

import pytest

from minitorch_attn.grading.runner import JUDGE, exercise_marker

HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.parent != HERE:
            continue
        marker = exercise_marker(item)
        if marker is None or not isinstance(marker[0], str) or not isinstance(marker[1], int) or marker[1] < 1:
            raise pytest.UsageError(f'{item.nodeid}: a graded test needs @pytest.mark.exercise("id", points=n) '
                                    f"with an int n >= 1, got {marker}")
        if "student" not in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid}: a graded test takes the `student` fixture (it is how the "
                                    "student's code runs)")


@pytest.fixture
def student(request):
    judge = request.config.stash.get(JUDGE, None)
    if judge is None:
        pytest.skip("graded tests run through the grader: `make grade` or `python minitorch_attn/grading`")
    exercise_id, _ = exercise_marker(request.node)
    return judge.student(exercise_id, cudasim=request.node.get_closest_marker("cudasim") is not None)
