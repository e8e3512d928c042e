"""``make student DEST=folder``: write the student edition of this repository into a folder.

The edition is every tracked file (``git ls-files``: no .venv, caches or .git),
except the instructor-only files below, with

* each ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` region of an ``@exercise``
  function replaced by ``raise NotImplementedError("Exercise <id>: <task>")``
  at the region's indentation;
* each ``BEGIN INSTRUCTOR ONLY`` ... ``END INSTRUCTOR ONLY`` comment block removed
  (the Makefile's ``student`` target, the README's instructor section);
* notebook outputs cleared (they would show the reference's results).

The same commit always gives the same bytes. Run: ``python -m minitorch_attn.grading.edition DEST``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys

from .regions import RegionError, solution_regions, strip_instructor_only, strip_solutions

#: Files that reveal the solutions (planted mistakes, tests of the grader): never in the student edition.
INSTRUCTOR_ONLY_PATHS = ("tests/test_grading.py", "tests/grading_mutants.py")

#: Written into the edition so that re-running ``make student`` may replace it (and nothing else).
STAMP = ".student-edition"
STAMP_TEXT = "Written by `make student`. Running it again replaces this whole folder.\n"

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def tracked_files(root: pathlib.Path) -> list[str]:
    """Tracked paths (as in the index), relative to ``root``, that exist in the working tree."""
    if not (root / ".git").exists():
        raise SystemExit(f"make student: {root} is not a git checkout; the student edition is made from the "
                         "instructor repository (a student edition cannot make another one)")
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True, capture_output=True).stdout
    paths = sorted(p for p in listed.decode("utf-8").split("\0") if p)
    return [p for p in paths if (root / p).is_file()]


def _is_instructor_only(path: str) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in INSTRUCTOR_ONLY_PATHS)


def _notebook_for_students(text: str, path: str) -> str:
    notebook = json.loads(text)
    changed = False
    for cell in notebook.get("cells", []):
        source = "".join(cell.get("source", []))
        if cell.get("cell_type") == "code" and solution_regions(source, path):
            raise RegionError(f"{path}: solution regions belong in the package, not in notebooks")
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            cell["outputs"], cell["execution_count"] = [], None
            changed = True
    # Rewrite only when something changed, in nbformat's own layout, so untouched notebooks keep their bytes.
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n" if changed else text


def student_version(path: str, data: bytes) -> bytes:
    """The student edition's bytes for tracked file ``path`` of the reference."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data  # binary (images, data files): copied as is
    text = strip_instructor_only(text, path)
    if path.endswith(".py"):
        text = strip_solutions(text, path)
        compile(text, path, "exec")  # a replaced region must leave valid Python
    elif path.endswith(".ipynb"):
        text = _notebook_for_students(text, path)
    return text.encode("utf-8")


def _prepare(dest: pathlib.Path, root: pathlib.Path) -> None:
    dest_resolved, root_resolved = dest.resolve(), root.resolve()
    if dest_resolved == root_resolved or root_resolved.is_relative_to(dest_resolved):
        raise SystemExit(f"make student: DEST={dest} would overwrite the reference repository")
    if dest.exists() and any(dest.iterdir()):
        if not (dest / STAMP).is_file():
            raise SystemExit(f"make student: {dest} exists and is not a student edition; choose an empty or new "
                             "folder (DEST=...)")
        shutil.rmtree(dest)


def write_edition(dest, root=REPOSITORY) -> list[str]:
    """Write the student edition of ``root`` into ``dest``; returns the paths written."""
    root, dest = pathlib.Path(root), pathlib.Path(dest)
    files = [p for p in tracked_files(root) if not _is_instructor_only(p)]
    _prepare(dest, root)
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        source = root / path
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(student_version(path, source.read_bytes()))
        os.chmod(target, source.stat().st_mode & 0o777)
    (dest / STAMP).write_text(STAMP_TEXT)
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make student", description=__doc__.splitlines()[0])
    parser.add_argument("dest", help="folder to write the student edition into (created or replaced)")
    args = parser.parse_args(argv)
    try:
        files = write_edition(args.dest)
    except RegionError as error:
        print(f"make student: {error}", file=sys.stderr)
        return 1
    stubs = sum(len(solution_regions((REPOSITORY / p).read_text("utf-8"), p)) for p in files if p.endswith(".py"))
    print(f"Student edition written to {args.dest}: {len(files)} files, {stubs} exercises replaced by "
          "NotImplementedError.\nThere: `make test` runs the tests, `make grade` prints the score table.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
