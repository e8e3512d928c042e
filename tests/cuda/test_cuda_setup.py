"""Checks of the CUDA backend that need neither a GPU nor the simulator (they run in the default
`make test` process): the guidance when CUDA is missing, compilation for a real GPU, the exercise."""
import types

import numpy as np
import pytest
from numba import cuda

import minitorch_attn
from minitorch_attn import exercise
from minitorch_attn.backends import cuda as cuda_backend
from minitorch_attn.backends.cuda import device
from minitorch_attn.backends.cuda import pooling as cuda_pooling
from minitorch_attn.grading.regions import strip_solutions

from cuda_cases import CUDA_RUNS, SIMULATOR, kernel_args


@pytest.mark.skipif(CUDA_RUNS, reason="CUDA runs in this process (a GPU or the simulator)")
def test_set_backend_explains_how_to_get_cuda():
    with pytest.raises(minitorch_attn.BackendUnavailable) as caught:
        minitorch_attn.set_backend("cuda")
    message = str(caught.value)
    assert "no CUDA GPU found" in message
    assert "NUMBA_ENABLE_CUDASIM=1" in message and "pip install -e .[gpu]" in message
    assert minitorch_attn.current_backend() == "numpy"


class _HostArray(np.ndarray):
    """Stands in for a device array: the kernels are compiled here, not run."""

    def copy_to_host(self):
        return np.asarray(self)


@pytest.mark.skipif(SIMULATOR, reason="the simulator does not compile kernels")
def test_every_kernel_compiles_for_a_real_gpu(monkeypatch):
    """The simulator runs kernels as plain Python, so it accepts code that Numba's CUDA compiler
    rejects. Here every launch of every host wrapper is typed and lowered for compute capability 8.0
    instead of run. Without NVRTC (no GPU extra) the last step, PTX assembly, cannot load its
    library: reaching it means typing and lowering succeeded."""
    import numba
    import numba.cuda.dispatcher

    compiled = set()

    def compile_instead(kernel, **launch):
        def launch_with(*args):
            signature = tuple(numba.typeof(np.asarray(a) if isinstance(a, np.ndarray) else a) for a in args)
            try:
                cuda.compile_ptx(kernel.py_func, signature, cc=(8, 0))
            except Exception as error:
                if type(error).__name__ != "DynamicLibNotFoundError" or "nvrtc" not in str(error):
                    raise
            compiled.add(kernel.py_func.__name__)
        return launch_with

    monkeypatch.setattr(device, "launch", compile_instead)
    monkeypatch.setattr(device, "upload", lambda *arrays: tuple(np.ascontiguousarray(a).view(_HostArray) for a in arrays))
    monkeypatch.setattr(device, "empty", lambda shape, dtype: np.zeros(shape, dtype).view(_HostArray))
    # device functions are compiled for "the current device"; there is none, so name one
    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(8, 0)))
    for dtype in (np.float32, np.float64):
        for name in minitorch_attn.backends.KERNEL_NAMES:
            getattr(cuda_backend, name)(*kernel_args(name, dtype))
    family_modules = [module for module in vars(cuda_backend).values() if isinstance(module, types.ModuleType)]
    every_kernel = {name for module in family_modules for name, value in vars(module).items()
                    if hasattr(value, "py_func") and not value.targetoptions.get("device")}
    # (over 30 here; 25 in the student edition, whose exercises' twins run the student's NumPy code instead)
    assert len(every_kernel) > 20 and compiled == every_kernel


# BEGIN INSTRUCTOR ONLY
# (about the solution regions, which the student edition does not have)
def test_exercise_9_2_student_edition_imports_and_asks_for_the_launch(monkeypatch):
    assert exercise.REGISTRY["9.2"].qualname == "channel_mean_forward"
    student = strip_solutions(open(cuda_pooling.__file__).read(), cuda_pooling.__file__)
    assert student.count("NotImplementedError") == 1
    module = types.ModuleType("minitorch_attn.backends.cuda._student_pooling")
    module.__package__ = "minitorch_attn.backends.cuda"
    monkeypatch.delitem(exercise.REGISTRY, "9.2")  # the student module registers it again
    exec(compile(student, "student_cuda_backend.py", "exec"), module.__dict__)
    with pytest.raises(NotImplementedError, match="Exercise 9.2"):
        module.channel_mean_forward(np.ones((1, 2, 3, 3)))
    assert callable(module.channel_max_forward)
# END INSTRUCTOR ONLY

