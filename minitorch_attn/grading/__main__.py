"""``python -m minitorch_attn.grading [ids or lessons] [--json grades.json]``: what ``make grade`` runs."""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from .runner import DEFAULT_TIMEOUT, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minitorch_attn.grading",
                                     description="Run the graded tests and print the score table.")
    parser.add_argument("selection", nargs="*", help="exercise ids (2.1) or lesson numbers (2); default: all")
    parser.add_argument("--json", metavar="PATH", help="also write the scores to this file (grades.json)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds allowed per test")
    parser.add_argument("--tests", metavar="DIR", help="the graded tests (default: tests/graded of this edition)")
    parser.add_argument("--quiet", action="store_true", help="print nothing (with --json)")
    parser.add_argument("--cudasim-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    report = run(args.selection, tests_dir=args.tests, timeout=args.timeout, cudasim_only=args.cudasim_only)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    if not args.quiet:
        print(report.table())
    # A low score is not an error; only a grader that could not run is.
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
