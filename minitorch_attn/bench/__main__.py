"""``python -m minitorch_attn.bench``: check, time and report (``--help`` lists the options)."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from . import report, runner
from .ops_cases import REDUCTION
from .step_cases import STEP_CASES
from .traffic import PASSES


def _shape(text):
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape is NxCxHxW with positive ints, e.g. 16x256x28x28; got {text!r}")
    if shape[1] < REDUCTION or shape[0] < 2:
        raise argparse.ArgumentTypeError(f"the blocks need C >= {REDUCTION} (the reduction ratio) and N >= 2 (BAM's "
                                         f"channel branch batch-normalises over the batch); got {text!r}")
    return shape


def _names(text):
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parser():
    p = argparse.ArgumentParser(
        prog="python -m minitorch_attn.bench",
        description="Time every op and the CBAM and BAM blocks (forward, forward+backward) on each backend "
                    "against PyTorch CPU eager, each side in its own process with the same threads and malloc "
                    "settings, after checking that both compute the same result.")
    p.add_argument("--quick", action="store_true",
                   help=f"one small shape {'x'.join(map(str, runner.QUICK_SHAPE))}, few repetitions (a smoke test)")
    p.add_argument("--shapes", type=lambda t: tuple(_shape(s) for s in t.split(",")),
                   help="comma-separated NxCxHxW (default: " + ",".join("x".join(map(str, s)) for s in runner.SHAPES)
                        + ")")
    p.add_argument("--dtypes", type=_names, default=("float32",), help="float32 and/or float64 (default float32)")
    p.add_argument("--backends", type=_names, help="our backends to time (default: every available one)")
    p.add_argument("--ops", type=_names, help="op cases to time (default: all; 'none' for blocks only)")
    p.add_argument("--blocks", type=_names, help="blocks to time: cbam,bam (default both; 'none' for ops only)")
    p.add_argument("--passes", type=_names, default=PASSES, help="fwd and/or fwd+bwd (default both)")
    p.add_argument("--steps", type=_names,
                   help=f"training-step cases to time: {','.join(STEP_CASES)} (default all; none with --quick; "
                        f"'none' for none)")
    p.add_argument("--step-threads", type=lambda t: tuple(int(n) for n in _names(t)),
                   help="thread counts of the training steps (default: 1 and --threads)")
    p.add_argument("--step-rounds", type=int, default=9,
                   help="timing rounds of the training steps per thread count, PyTorch and ours in turn (a "
                        "process per side that stays up); a step's ratio is the median of the rounds' "
                        "(default %(default)s)")
    p.add_argument("--block-rounds", type=int,
                   help="timing rounds of the CBAM and BAM blocks per shape, PyTorch and ours in turn (a process "
                        "per side that stays up); a block's ratio is the median of the rounds' (default 9, 1 with "
                        "--quick)")
    p.add_argument("--profile", action="store_true",
                   help="print where one training step of each --steps case (default resnet10-cbam) spends its "
                        "time, kernel by kernel, on each --backends (default numba) at --threads; times nothing "
                        "else")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for every side (default: the number of cores, %(default)s here)")
    p.add_argument("--min-time", type=float, help="seconds of timed calls per measurement (default 0.5)")
    p.add_argument("--min-reps", type=int, help="timed calls per measurement at least (default 20)")
    p.add_argument("--out", help="results JSON (default bench-results/<machine>.json, -quick.json with --quick)")
    p.add_argument("--readme", nargs="?", const="README.md", metavar="README",
                   help="render the latest full results (or --results) into README between the bench markers; "
                        "times nothing")
    p.add_argument("--markdown", action="store_true", help="print the latest results (or --results) as Markdown")
    p.add_argument("--results", help="the results JSON that --readme/--markdown render")
    return p


def _cases(args):
    from .ops_cases import OP_CASES

    ops = tuple(OP_CASES) if args.ops is None else () if args.ops == ("none",) else args.ops
    blocks = runner.BLOCKS if args.blocks is None else () if args.blocks == ("none",) else args.blocks
    unknown = [name for name in ops if name not in OP_CASES] + [b for b in blocks if b not in runner.BLOCKS]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; ops: {sorted(OP_CASES)}, blocks: {list(runner.BLOCKS)}")
    return ops + blocks


def _steps(args, default):
    steps = default if args.steps is None else () if args.steps == ("none",) else args.steps
    unknown = [name for name in steps if name not in STEP_CASES]
    if unknown:
        raise SystemExit(f"unknown training-step case(s) {unknown}; expected some of {list(STEP_CASES)}")
    return steps


def _backends(names):
    """The requested backends, refused before any work when unknown or unavailable here."""
    from .. import backends

    for name in names:
        if name not in backends.BACKEND_MODULES:
            raise SystemExit(f"--backends: unknown backend {name!r}; expected some of {list(backends.BACKEND_MODULES)}")
        try:
            backends.kernels(name)
        except (backends.BackendUnavailable, ImportError) as error:
            raise SystemExit(f"--backends: {error}") from None
    return names


def settings_from(args):
    unknown = [p for p in args.passes if p not in PASSES] + [d for d in args.dtypes if d not in ("float32", "float64")]
    if unknown:
        raise SystemExit(f"unknown pass or dtype {unknown}; passes: {list(PASSES)}, dtypes: float32, float64")
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    quick = args.quick
    cases, steps = _cases(args), _steps(args, () if quick else tuple(STEP_CASES))
    if not cases + steps:
        raise SystemExit("nothing to time: --ops none, --blocks none and no --steps")
    step_threads = args.step_threads or tuple(sorted({1, args.threads}))
    if min(step_threads) < 1:
        raise SystemExit(f"--step-threads must be >= 1, got {step_threads}")
    if args.step_rounds < 1:
        raise SystemExit(f"--step-rounds must be >= 1, got {args.step_rounds}")
    block_rounds = args.block_rounds if args.block_rounds is not None else (1 if quick else 9)
    if block_rounds < 1:
        raise SystemExit(f"--block-rounds must be >= 1, got {block_rounds}")
    return runner.Settings(
        shapes=() if not cases else args.shapes or ((runner.QUICK_SHAPE,) if quick else runner.SHAPES),
        dtypes=args.dtypes, backends=_backends(args.backends or ()), cases=cases, passes=args.passes,
        threads=args.threads, steps=steps, step_threads=step_threads, step_rounds=args.step_rounds,
        block_rounds=block_rounds,
        min_time=args.min_time if args.min_time is not None else (0.02 if quick else 0.5),
        min_reps=args.min_reps if args.min_reps is not None else (3 if quick else 20),
        warmup_time=0.01 if quick else 0.2, quick=quick)


def main(argv=None):
    args = parser().parse_args(argv)
    if args.readme or args.markdown:
        try:
            with open(args.results or report.latest_results()) as f:
                section = report.markdown(json.load(f))
        except FileNotFoundError as error:
            raise SystemExit(str(error)) from None
        if args.markdown:
            print(section, end="")
        if args.readme:
            try:
                report.update_readme(args.readme, section)
            except (OSError, ValueError) as error:
                raise SystemExit(str(error)) from None
            print(f"updated {args.readme}", file=sys.stderr)
        return 0
    if args.profile:
        return profile(args)
    settings = settings_from(args)
    command = "python -m minitorch_attn.bench" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    started = time.perf_counter()

    def log(line):
        print(f"[{time.perf_counter() - started:6.1f} s] {line}", file=sys.stderr, flush=True)

    document = runner.run(settings, log=log, command=command)
    out = args.out or os.path.join(
        "bench-results", runner.machine_slug(document["machine"]) + ("-quick" if settings.quick else "") + ".json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    print(report.text_table(document))
    print(f"\nresults: {out}", flush=True)
    return 1 if document["failures"] else 0


def profile(args):
    """``--profile``: the kernel-by-kernel profile of one training step, in this process."""
    from .profile import format_profile, profile_step

    steps = _steps(args, ("resnet10-cbam",))
    for name in _backends(args.backends or ("numba",)):
        if name == "numba":
            import numba

            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        for case in steps:
            print(format_profile(case, name, args.threads, profile_step(case, name)), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
