"""Where one training step spends its time: ``python -m minitorch_attn.bench --profile``.

A few warm steps of a step case (:mod:`.step_cases`) run with every kernel call timed through
``backends.timing_kernels``; the table gives each kernel's milliseconds per step and share of the step.
"outside the kernels" is the rest: autograd's bookkeeping, the modules' Python, argument checks in the
ops, and the SGD update (NumPy, timed on its own as well). Run in this process, on the backend and
thread count asked for; the numbers are one machine's, on a quiet machine only.
"""
from __future__ import annotations

import time
from collections import defaultdict

from .. import backend, backends
from .measure import measure
from .step_cases import OursStep, describe

#: The op family of every kernel (the module of ``minitorch_attn/ops`` it serves), for the family totals.
FAMILIES = {
    "pooling": ("global_avg_pool_forward", "global_avg_pool_backward", "global_max_pool_forward",
                "global_max_pool_backward", "global_lp_pool_forward", "global_lp_pool_backward",
                "global_lse_pool_forward", "global_lse_pool_backward", "channel_mean_forward",
                "channel_mean_backward", "channel_max_forward", "channel_max_backward",
                "global_avg_max_pool_forward", "global_avg_max_pool_backward"),
    "dense": ("linear_forward", "linear_backward", "relu_forward", "relu_backward", "sigmoid_forward",
              "sigmoid_backward"),
    "arith": ("mul_forward", "mul_backward", "add_forward", "sum_to_shape"),
    "conv": ("conv2d_forward", "conv2d_backward"),
    "norm": ("batch_norm_train_forward", "batch_norm_eval_forward", "batch_norm_backward"),
    "loss": ("softmax_cross_entropy_forward", "softmax_cross_entropy_backward"),
    "attention": ("gated_channel_pool_forward", "gated_channel_pool_backward", "channel_spatial_gate_forward",
                  "channel_spatial_gate_backward", "residual_gate_forward", "residual_gate_backward"),
}
FAMILY_OF = {kernel: name for name, kernels in FAMILIES.items() for kernel in kernels}


def profile_step(case, backend_name, steps=5, dtype="float32", seed=0):
    """``{"step_ms", "phases": {phase: ms}, "kernels": {name: (calls, ms)}}``, all per step (means over ``steps``)."""
    with backend(backend_name):
        runner = OursStep(case, dtype, seed)
        step_ms = measure(runner.step, min_time=0.0, min_reps=steps, warmup_time=0.0, warmup_reps=1).median_ms
        phases = defaultdict(float)
        totals = defaultdict(lambda: [0, 0.0])

        def record(name, seconds):
            totals[name][0] += 1
            totals[name][1] += seconds

        for _ in range(steps):
            runner.optimizer.zero_grad()
            with backends.timing_kernels(record):
                started = time.perf_counter()
                loss = runner.forward_loss()
                forward_done = time.perf_counter()
                loss.backward()
                backward_done = time.perf_counter()
            runner.optimizer.step()
            step_done = time.perf_counter()
            phases["forward + loss"] += forward_done - started
            phases["backward"] += backward_done - forward_done
            phases["SGD update"] += step_done - backward_done
    return {"step_ms": step_ms,
            "phases": {name: 1e3 * seconds / steps for name, seconds in phases.items()},
            "kernels": {name: (calls // steps, 1e3 * seconds / steps) for name, (calls, seconds) in totals.items()}}


def format_profile(case, backend_name, threads, result):
    """The profile as text: the phases, then kernels by time with their share of the timed steps."""
    timed_ms = sum(result["phases"].values())
    kernel_ms = sum(ms for _, ms in result["kernels"].values())
    lines = [f"{case}: {describe(case)}",
             f"backend {backend_name}, {threads} thread{'s' if threads != 1 else ''}: one step {result['step_ms']:.1f} ms "
             f"(median, untimed kernels); with every kernel timed {timed_ms:.1f} ms, of which:",
             "  " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in result["phases"].items()), "",
             f"{'kernel':34s} {'family':9s} {'calls':>5s} {'ms/step':>8s} {'share':>6s}"]
    for name, (calls, ms) in sorted(result["kernels"].items(), key=lambda item: -item[1][1]):
        lines.append(f"{name:34s} {FAMILY_OF[name]:9s} {calls:5d} {ms:8.2f} {100 * ms / timed_ms:5.1f}%")
    outside = timed_ms - kernel_ms
    lines.append(f"{'outside the kernels (autograd, Python, SGD)':44s} {'':5s} {outside:8.2f} "
                 f"{100 * outside / timed_ms:5.1f}%")
    by_family = defaultdict(float)
    for name, (_, ms) in result["kernels"].items():
        by_family[FAMILY_OF[name]] += ms
    lines += ["", "by family: " + ", ".join(f"{name} {100 * ms / timed_ms:.0f}%"
                                           for name, ms in sorted(by_family.items(), key=lambda item: -item[1]))]
    return "\n".join(lines)
