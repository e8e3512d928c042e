"""Graded tests: every test carries ``@pytest.mark.exercise("id", points=n)`` and runs isolated.

While a test of exercise X runs, every other exercise is replaced by its trusted
PyTorch stand-in, so X's score depends on X's code alone.
"""
import pathlib

import pytest

from minitorch_attn.grading.isolation import isolate
from minitorch_attn.grading.runner import exercise_marker

HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.parent != HERE:
            continue
        marker = exercise_marker(item)
        if marker is None or not isinstance(marker[0], str) or not isinstance(marker[1], int) or marker[1] < 1:
            raise pytest.UsageError(f'{item.nodeid}: a graded test needs @pytest.mark.exercise("id", points=n) '
                                    f"with an int n >= 1, got {marker}")


@pytest.fixture(autouse=True)
def only_this_exercise_is_the_students(request):
    exercise_id, _ = exercise_marker(request.node)
    with isolate(exercise_id):
        yield
