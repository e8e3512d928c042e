"""``python -m minitorch_attn.experiments list | run NAME | report NAME`` (NAME may be ``all``)."""
from __future__ import annotations

import argparse
import sys

from . import report, runner, tables


def names(name):
    return list(tables.EXPERIMENTS) if name == "all" else [tables.get(name).name]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minitorch_attn.experiments",
                                     description="The papers' ablation tables, trained and reported here.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the experiments and their variants")
    run = commands.add_parser("run", help="train every missing (variant, seed); finished runs are kept")
    run.add_argument("name", help="an experiment (see list) or 'all'")
    run.add_argument("--seeds", type=int, default=3, help="seeds 1..N per variant (default 3)")
    run.add_argument("--quick", action="store_true", help="the tiny smoke budget, into data/results-quick")
    run.add_argument("--jobs", type=int, default=1,
                     help="child processes side by side (more than one: one Numba thread each; 0: in this process)")
    run.add_argument("--variants", help="comma-separated variant names (default: all)")
    run.add_argument("--results", help="results folder (default data/results)")
    show = commands.add_parser("report", help="our numbers beside the paper's, and a figure per table")
    show.add_argument("name", help="an experiment (see list) or 'all'")
    show.add_argument("--results", help="results folder (default data/results)")
    show.add_argument("--quick", action="store_true", help="report data/results-quick")
    show.add_argument("--no-figure", action="store_true", help="print the table only")
    one = commands.add_parser("_one")  # one (variant, seed) in this process: what `run` starts per child
    one.add_argument("name")
    one.add_argument("variant")
    one.add_argument("seed", type=int)
    one.add_argument("--results", required=True)
    one.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for name in tables.EXPERIMENTS:
                experiment = tables.get(name)
                print(f"{name:20s} {experiment.title}\n{'':20s} variants: "
                      f"{', '.join(v.name for v in experiment.variants)}")
            return 0
        if args.command == "_one":
            experiment = tables.get(args.name)
            budget = runner.QUICK if args.quick else runner.FULL
            runner.train_one(experiment, experiment.variant(args.variant), args.seed, budget, args.results)
            return 0
        if args.command == "run":
            variants = args.variants.split(",") if args.variants else None
            failed = sum(runner.run(name, seeds=args.seeds, quick=args.quick, results=args.results,
                                    jobs=args.jobs, variants=variants) for name in names(args.name))
            if failed:
                print(f"{failed} run(s) failed; finished runs are kept, run the same command again to retry")
            return 1 if failed else 0
        results = args.results or (runner.RESULTS.parent / "results-quick" if args.quick else runner.RESULTS)
        for name in names(args.name):
            print(report.format_report(name, results), end="\n\n")
            if not args.no_figure:
                print(f"figure: {report.figure(name, results)}\n")
        return 0
    except (ValueError, PermissionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
