"""``python minitorch_attn/grading [ids or lessons] [--json grades.json]``: the judge, what ``make grade`` runs.

Run as a folder (not ``-m``, which would import the student's package first),
this process loads ``minitorch_attn/grading`` and ``minitorch_attn/testing.py``
under their usual names and nothing else of the package: the student's code
runs only in the per-exercise processes, and the score is decided and written
here, after they are gone.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import types

GRADING_DIR = pathlib.Path(__file__).resolve().parent


def _load_judge_modules() -> None:
    """Make ``minitorch_attn.grading`` importable without running ``minitorch_attn/__init__.py``."""
    if sys.path and pathlib.Path(sys.path[0]).resolve() == GRADING_DIR:
        sys.path.pop(0)
    parent = types.ModuleType("minitorch_attn", "the grader's view: only grading/ and testing.py")
    parent.__path__ = []  # any other submodule of the package fails to import here
    sys.modules["minitorch_attn"] = parent
    for name, path, search in [("testing", GRADING_DIR.parent / "testing.py", None),
                               ("grading", GRADING_DIR / "__init__.py", [str(GRADING_DIR)])]:
        spec = importlib.util.spec_from_file_location(f"minitorch_attn.{name}", path,
                                                      submodule_search_locations=search)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(parent, name, module)


def main(argv=None) -> int:
    from minitorch_attn.grading.report import Report
    from minitorch_attn.grading.runner import DEFAULT_TIMEOUT, run

    parser = argparse.ArgumentParser(prog="python minitorch_attn/grading",
                                     description="Run the graded tests and print the score table.")
    parser.add_argument("selection", nargs="*", help="exercise ids (2.1) or lesson numbers (2); default: all")
    parser.add_argument("--json", metavar="PATH", help="also write the scores to this file (grades.json)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds allowed per test (and for the package's import) before the exercise's "
                             "process is killed")
    parser.add_argument("--tests", metavar="DIR", help="the graded tests (default: tests/graded of this edition)")
    parser.add_argument("--quiet", action="store_true", help="print nothing (with --json)")
    args = parser.parse_args(argv)
    try:
        report = run(args.selection, tests_dir=args.tests, timeout=args.timeout)
    except Exception as error:  # the grader itself failed: grades.json still says so
        report = Report([], {}, [f"the grader failed: {type(error).__name__}: {error}"])
    data = report.write_json(args.json) if args.json else report.to_json()
    if not args.quiet:
        print(Report.from_json(data).table())
    # A low score is not an error; an exercise that could not be judged is.
    return 0 if report.complete else 1


if __name__ == "__main__":
    if __package__:  # `python -m minitorch_attn.grading`: start again without the package imported
        os.execv(sys.executable, [sys.executable, str(GRADING_DIR), *sys.argv[1:]])
    _load_judge_modules()
    sys.exit(main())
