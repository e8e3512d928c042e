"""Graded tests: every test carries ``@pytest.mark.exercise("id", points=n)`` and runs isolated.

While a test of exercise X runs, every other exercise is replaced by its trusted
PyTorch stand-in, so X's score depends on X's code alone.

Tests marked ``cudasim`` need numba's CUDA in this process (NUMBA_ENABLE_CUDASIM=1
before numba is imported, or a GPU); elsewhere they are skipped, and ``make grade``
runs them in a child process that has the simulator.
"""
import os
import pathlib
import sys

import pytest

from minitorch_attn.grading.isolation import isolate
from minitorch_attn.grading.runner import exercise_marker

HERE = pathlib.Path(__file__).parent

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    # One Python thread per simulated CUDA thread: switching the GIL often speeds up the barriers.
    sys.setswitchinterval(1e-4)


def cuda_problem():
    from minitorch_attn.backends import cuda_backend

    return cuda_backend.availability()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.parent != HERE:
            continue
        marker = exercise_marker(item)
        if marker is None or not isinstance(marker[0], str) or not isinstance(marker[1], int) or marker[1] < 1:
            raise pytest.UsageError(f'{item.nodeid}: a graded test needs @pytest.mark.exercise("id", points=n) '
                                    f"with an int n >= 1, got {marker}")
        if item.get_closest_marker("cudasim") and cuda_problem():
            item.add_marker(pytest.mark.skip(reason="needs numba's CUDA in this process: run "
                                                    "`NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim tests/graded`"))


@pytest.fixture(autouse=True)
def only_this_exercise_is_the_students(request):
    exercise_id, _ = exercise_marker(request.node)
    with isolate(exercise_id):
        yield
