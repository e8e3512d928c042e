"""One measurement group in its own process: ``python -m minitorch_attn.bench.worker SPEC.json RESULT.json``.

The parent (:mod:`minitorch_attn.bench.runner`) starts every group with the same fixed environment
(malloc settings, thread counts). A group is one shape and dtype in one of two modes:

* ``check``: each of our backends against PyTorch on the same inputs and parameters (imports both; never timed);
* ``time``: one side only (one of our backends, or ``torch``), so that PyTorch's and Numba's OpenMP
  runtimes never share a process;
* ``step-check``: the check for the training-step cases (:mod:`.step_cases`);
* ``serve``: timing in turns. One side's training steps (``steps``) and/or blocks (``cases``, each pass, each
  PyTorch variant) built and warmed, then timed on request (``python -m minitorch_attn.bench.worker SPEC.json
  -``): it says ``READY`` with its jobs, the parent writes ``JOB REPS`` lines to its stdin (a job's index),
  and it answers each with a line ``TIMES [seconds, ...]`` of that many calls, so that the parent can time
  two sides' processes in turn, a second or less each, while both stay warm.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from ..testing import rel_error
from .block_cases import BLOCK_VARIANTS, TORCH_BLOCKS, OursBlock, TorchBlock
from .measure import COPIES, copy_bandwidth, measure, timed_calls
from .ops_cases import OP_CASES, OursOp, TorchOp
from .step_cases import OursStep, TorchStep
from .traffic import PASSES

#: Largest relative error (``testing.rel_error``) accepted before timing, per dtype: ten times the op
#: tests' tolerance, since batch-norm statistics and weight gradients sum over N·H·W terms (32768 here).
CHECK_TOLERANCE = {"float32": 1e-4, "float64": 1e-9}


class BenchmarkMismatch(AssertionError):
    """Our result and PyTorch's differ: the benchmark refuses to time a computation that is not the same."""


def op_or_block(name):
    """("op", OpCase) or ("block", block name)."""
    if name in OP_CASES:
        return "op", OP_CASES[name]
    if name in TORCH_BLOCKS:
        return "block", name
    raise ValueError(f"case: unknown name {name!r}; expected one of {sorted(OP_CASES) + sorted(TORCH_BLOCKS)}")


def variants(name):
    kind, case = op_or_block(name)
    return case.variants if kind == "op" else BLOCK_VARIANTS[name]


def build_ours(name, shape, dtype, seed):
    """Our side of a case on the current backend: an object with ``forward()`` and ``forward_backward()``."""
    kind, case = op_or_block(name)
    return OursOp(case, shape, dtype, seed) if kind == "op" else OursBlock(name, shape, dtype, seed)


def build_theirs(ours, name, variant, parameter_seed=None):
    """PyTorch's side on copies of ``ours``' inputs (and parameters).

    ``parameter_seed`` (blocks only) gives PyTorch other parameter values: a deliberately wrong pair.
    """
    kind, _ = op_or_block(name)
    if kind == "block":
        return TorchBlock(ours, name, variant, parameter_seed)
    if parameter_seed is not None:
        raise ValueError("parameter_seed: only blocks have parameters to replace")
    return TorchOp(ours, variant)


def _numpy(value):
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def compare(ours, theirs, dtype, label):
    """Max relative error over every output and every gradient of both passes; raises BenchmarkMismatch.

    Forward (no graph) outputs, then forward+backward outputs and input/parameter gradients.
    """
    tolerance = CHECK_TOLERANCE[str(np.dtype(dtype))]
    pairs = [(f"forward output {i}", a, b) for i, (a, b) in enumerate(zip(ours.forward(), theirs.forward()))]
    ours_out, ours_grads = ours.forward_backward()
    their_out, their_grads = theirs.forward_backward()
    if len(ours_grads) != len(their_grads):
        raise BenchmarkMismatch(f"{label}: {len(ours_grads)} gradients vs PyTorch's {len(their_grads)}")
    pairs += [(f"output {i}", a, b) for i, (a, b) in enumerate(zip(ours_out, their_out))]
    pairs += [(f"gradient {i}", a, b) for i, (a, b) in enumerate(zip(ours_grads, their_grads))]
    worst_name, worst = "", 0.0
    for what, a, b in pairs:
        a, b = _numpy(a), _numpy(b)
        error = rel_error(a, b) if a.shape == b.shape else float("inf")
        if not error <= worst:  # also catches NaN
            worst_name, worst = what, error
    if not worst <= tolerance:
        raise BenchmarkMismatch(f"{label}: {worst_name} differs from PyTorch's, relative error {worst:.3g} "
                                f"> {tolerance:g}; refusing to time a different computation")
    return worst


def check_group(spec):
    """Every case on each of our backends (``spec["backends"]``) against every PyTorch variant.

    One record per (backend, case, variant): ``max_rel_error``, or ``error`` with the mismatch.
    """
    from .. import backend

    shape, dtype = tuple(spec["shape"]), spec["dtype"]
    records = []
    for side in spec["backends"]:
        with backend(side):
            for name in spec["cases"]:
                for variant in variants(name):
                    record = {"backend": side, "case": name, "variant": variant}
                    try:
                        ours = build_ours(name, shape, dtype, spec["seed"])
                        record["max_rel_error"] = compare(ours, build_theirs(ours, name, variant), dtype,
                                                          f"{name} [{side} vs torch {variant}] {shape} {dtype}")
                    except BenchmarkMismatch as error:
                        record["error"] = str(error)
                    records.append(record)
    return {"checks": records}


def time_group(spec):
    side, shape, dtype = spec["side"], tuple(spec["shape"]), spec["dtype"]
    timing = dict(min_time=spec["min_time"], min_reps=spec["min_reps"], warmup_time=spec["warmup_time"])
    result = {"side": side, "threads": _set_threads(side, spec["threads"]), "timings": []}
    if side != "torch":
        from .. import set_backend

        set_backend(side)
    for job, fn in case_calls(spec, side):
        result["timings"].append(dict(job, **measure(fn, **timing).as_dict()))
    if side in COPIES:
        src = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        result["copy_gb_per_s"] = copy_bandwidth(COPIES[side](src, np.empty_like(src)), src.nbytes, **timing)
    return result


def case_calls(spec, side):
    """``(job, fn)`` for each case of ``spec`` (op or block) on ``side``, in each of PyTorch's variants (ours has
    one, ``None``), and each of ``spec["passes"]``; a job is {case, pass, variant}."""
    for name in spec["cases"]:
        for variant in (variants(name) if side == "torch" else (None,)):
            # the PyTorch side is built from ours (same inputs); our side never imports torch
            runner = build_ours(name, tuple(spec["shape"]), spec["dtype"], spec["seed"])
            if side == "torch":
                runner = build_theirs(runner, name, variant)
            for pass_name, fn in zip(PASSES, (runner.forward, runner.forward_backward)):
                if pass_name in spec["passes"]:
                    yield {"case": name, "pass": pass_name, "variant": variant}, fn


#: The training-step check runs in float64: a whole network's float32 gradients differ from PyTorch's by
#: rounding of ~1e-4 (a spatial-gate conv weight sums 65536 products), which would hide a real mismatch.
STEP_CHECK_DTYPE, STEP_CHECK_TOLERANCE = "float64", 1e-9


def step_check_group(spec):
    """One float64 training step of every step case on each backend against its PyTorch twin: the loss
    and every parameter gradient; one record per (backend, case) with ``max_rel_error`` or ``error``."""
    from .. import backend

    records = []
    for side in spec["backends"]:
        with backend(side):
            for name in spec["steps"]:
                ours = OursStep(name, STEP_CHECK_DTYPE, spec["seed"])
                theirs = TorchStep(ours)
                pairs = [("loss", ours.step(), theirs.step())]
                ours_grads, their_grads = ours.gradients(), theirs.gradients()
                pairs += [(f"gradient of {key}", grad, their_grads.get(key)) for key, grad in ours_grads.items()]
                worst_name, worst = "", 0.0
                for what, a, b in pairs:
                    a, b = np.asarray(a), None if b is None else np.asarray(b)
                    error = rel_error(a, b) if b is not None and a.shape == b.shape else float("inf")
                    if not error <= worst:
                        worst_name, worst = what, error
                record = {"backend": side, "case": name, "variant": "step"}
                if worst <= STEP_CHECK_TOLERANCE:
                    record["max_rel_error"] = worst
                else:
                    record["error"] = (f"{name} [{side} vs torch] {STEP_CHECK_DTYPE}: {worst_name} differs from "
                                       f"PyTorch's, relative error {worst:.3g} > {STEP_CHECK_TOLERANCE:g}; "
                                       f"refusing to time a different computation")
                records.append(record)
    return {"checks": records}


def serve_jobs(spec, side):
    """The calls a ``serve`` worker times: ``[(job, fn)]``, a job being {case, pass, variant}; the training
    steps first, then the cases' calls (:func:`case_calls`)."""
    jobs = []
    for name in spec.get("steps", ()):
        runner = OursStep(name, spec["dtype"], spec["seed"])
        runner = TorchStep(runner) if side == "torch" else runner
        jobs.append(({"case": name, "pass": "train step", "variant": "eager" if side == "torch" else None},
                     runner.step))
    if spec.get("cases"):
        jobs += case_calls(spec, side)
    return jobs


def serve(spec):
    """Build and warm ``spec``'s jobs (:func:`serve_jobs`) on one side, say ``READY {"threads": n, "jobs":
    [{case, pass, variant, ms}]}``, then answer each ``JOB REPS`` line of stdin with ``TIMES [...]``, until
    stdin closes. The protocol has stdout to itself: anything else printed goes to stderr."""
    answer, sys.stdout = sys.stdout, sys.stderr
    side = spec["side"]
    threads = _set_threads(side, spec["threads"])
    if side != "torch":
        from .. import set_backend

        set_backend(side)
    jobs = serve_jobs(spec, side)
    described = [dict(job, ms=measure(fn, min_time=spec["warmup_time"], min_reps=3,
                                      warmup_time=spec["warmup_time"]).median_ms) for job, fn in jobs]
    print("READY " + json.dumps({"threads": threads, "jobs": described}), file=answer, flush=True)
    for line in sys.stdin:
        index, reps = (int(word) for word in line.split())
        print("TIMES " + json.dumps(timed_calls(jobs[index][1], reps)), file=answer, flush=True)


def _set_threads(side, threads):
    """Pin the side's thread count (the environment already capped OpenMP and BLAS); returns what it uses."""
    if side == "torch":
        import torch

        torch.set_num_threads(threads)
        return torch.get_num_threads()
    if side == "numba":
        import numba

        numba.set_num_threads(threads)
        return numba.get_num_threads()
    return threads


def main(argv):
    spec_path, result_path = argv
    with open(spec_path) as f:
        spec = json.load(f)
    if spec["mode"] == "serve":
        serve(spec)
        return
    modes = {"check": check_group, "time": time_group, "step-check": step_check_group}
    result = modes[spec["mode"]](spec)
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
