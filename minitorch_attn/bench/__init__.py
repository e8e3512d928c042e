"""The benchmark: every op and the CBAM and BAM blocks on each backend against PyTorch CPU eager.

``python -m minitorch_attn.bench`` (``make bench``) runs, for each (N,C,H,W) and dtype:

1. a *check* per backend: our op/block and the PyTorch one on the same inputs, parameters and upstream
   gradient must agree (outputs and every gradient, relative error below ``worker.CHECK_TOLERANCE``);
   a mismatch is reported and that backend is not timed there;
2. a *timing* group per side (PyTorch, then each of our backends), each in its own process started
   with the same environment (``runner.child_environment``): glibc's ``MALLOC_MMAP_THRESHOLD_`` and
   ``MALLOC_TRIM_THRESHOLD_`` fixed (else page faults dominate PyTorch's timings) and OpenMP, Numba and
   BLAS capped at ``--threads``. PyTorch and Numba never share a process: their two OpenMP runtimes
   slow each other down. Every measurement warms up (JIT compilation included), then repeats until
   ``--min-reps`` calls and ``--min-time`` seconds; the median and the interquartile range are kept.
   Each timing process also measures its copy bandwidth on an F-sized array. The blocks (the goals)
   are timed in turns instead (``runner.time_in_turns``): one process per side stays up with the blocks
   built and warm, and for ``--block-rounds`` rounds each block pass takes its turn on PyTorch and on ours,
   about ``--min-time`` seconds each; a block's ratio is the median of its ratios to PyTorch in the same
   round (this machine's speed drifts between processes by more than the gaps measured);
3. the *report*: ratio vs PyTorch's fastest formulation and time over the memory-traffic floor
   (``traffic.FLOOR``: the bytes a pass must move, at the best copy bandwidth measured for that shape).

Then the training steps (``step_cases``: forward, cross-entropy, backward, SGD momentum of a whole small
network against its ``interop.to_torch`` twin): one float64 check of the loss and every parameter
gradient, then at each ``--step-threads`` count one process per side that stays up with its steps warm,
the sides taking turns of about ``--min-time`` seconds for ``--step-rounds`` rounds (``runner.time_in_turns``),
reported in images per second.
``--profile`` prints instead where one step spends its time, kernel by kernel (``profile``).

The results document (JSON, ``bench-results/<machine>.json``):
``machine`` {cpu, cores, threads, system}, ``versions``, ``date``, ``command``, ``settings``,
``checks`` [{case, variant, backend, shape, dtype, max_rel_error | error}],
``bandwidth`` [{shape, dtype, side, gb_per_s}],
``entries`` [{name, kind (op/block), shape, dtype, pass (fwd / fwd+bwd), backend, median_ms, iqr_ms, reps,
threads, ratio_vs_torch (PyTorch ms / ours: > 1 is faster than PyTorch), floor_ms, time_over_floor;
PyTorch rows add torch_variant and torch_variants_ms; entries timed in several rounds (blocks, training
steps) add round_ms and round_ratios; training steps have kind "step", pass "train step", the input's shape,
and img_per_s}],
``goals`` [{goal, shape, quantity, value, target, met}], ``failures`` [check messages].
"""
