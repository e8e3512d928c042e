"""Shared fixtures: the backends to run on, the two float dtypes, a seeded generator, hypothesis defaults."""
import os

import numpy as np
import pytest
from hypothesis import settings

from minitorch_attn import backends
from minitorch_attn.lessons import unfinished_exercise, unfinished_exercise_in

# Examples are cheap but the machine is small: few of them, and no per-example deadline
# (the first Numba call of a kernel compiles it).
settings.register_profile("minitorch_attn", max_examples=20, deadline=None, print_blob=True)
settings.load_profile("minitorch_attn")


def pytest_configure(config):
    """One thread per xdist worker for PyTorch and Numba: the workers already fill the cores, and a second
    thread per worker (torch's spin-waits, Numba's hand-offs on tiny tensors) made tests many times slower.
    Results do not depend on it: the kernels give the same bits for any thread count (test_backend_numba
    sets the counts it compares itself)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import numba
        import torch

        torch.set_num_threads(1)
        numba.set_num_threads(1)


def _backend_params():
    """numpy always; numba where it is importable; cuda only where it runs (GPU or simulator process)."""
    params = [pytest.param("numpy")]
    if backends.is_available("numba"):
        params.append(pytest.param("numba"))
    if backends.is_available("cuda"):
        params.append(pytest.param("cuda", marks=pytest.mark.cudasim))
    return params


BACKEND_PARAMS = _backend_params()


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    """Each available backend by name; the test decides where to run it (``with backend(name):``)."""
    return request.param


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


def pytest_terminal_summary(terminalreporter):
    """Show the lines tests recorded with ``record_property("summary", line)`` (xdist workers' too)."""
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        if report.when == "call":
            for name, value in report.user_properties:
                if name == "summary":
                    terminalreporter.write_line(value)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Student edition: a test that stops at an unwritten exercise is skipped and says which one.

    The stub may also have raised in a child process or been caught and printed (a parity table), so the
    failure message and the test's captured output are read too. The grader's tests (tests/graded) are left
    to it: it scores them itself.
    """
    report = (yield).get_result()
    if report.failed and call.excinfo is not None and item.path.parent.name != "graded":
        text = report.longreprtext + "".join(content for _, content in report.sections)
        waiting = unfinished_exercise(call.excinfo.value) or unfinished_exercise_in(text)
        if waiting:
            report.outcome, report.longrepr = "skipped", (str(item.path), item.location[1], f"waits for {waiting}")
