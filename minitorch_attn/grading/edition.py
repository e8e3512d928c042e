"""``make student DEST=folder``: write the student edition of this repository into a folder.

The edition is every tracked file (``git ls-files``: no .venv, caches or .git),
except the instructor-only files below, with

* each ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` region of an ``@exercise``
  function replaced by ``raise NotImplementedError("Exercise <id>: <task>")``
  at the region's indentation;
* each ``BEGIN INSTRUCTOR ONLY`` ... ``END INSTRUCTOR ONLY`` comment block removed
  (the Makefile's ``student`` target, the README's instructor section, tests of
  the solution regions themselves);
* the other backends' versions of every exercise's formula replaced by the
  student's NumPy function (see :func:`without_twins`): the Numba and CUDA kernels
  of a backward pass would otherwise show, and compute, the answer;
* ``STUDENT_README.md`` installed as ``README.md`` (a quick start for students;
  the benchmark tables stay in the instructor's README);
* notebook outputs cleared (they would show the reference's results).

The same commit always gives the same bytes. Run: ``python -m minitorch_attn.grading.edition DEST``.
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

from .regions import RegionError, exercise_functions, solution_regions, strip_instructor_only, strip_solutions

#: Files that reveal the solutions (planted mistakes, tests of the grader) or test what only the instructor's
#: repository has (this builder): never in the student edition. Glob patterns, so that new tests of the grader
#: (``tests/test_grading_*.py``) stay out too.
INSTRUCTOR_ONLY_PATHS = ("tests/test_grading*.py", "tests/grading_*.py", "tests/test_edition.py")

#: Tracked files that the edition writes under another name (and whose targets it leaves out).
RENAMED = {"STUDENT_README.md": "README.md"}

#: The backend whose exercises the other backends defer to in the edition, and where the others live.
REFERENCE_BACKEND = "minitorch_attn/backends/numpy_backend.py"
BACKENDS_DIR = "minitorch_attn/backends/"

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
    return any(fnmatch.fnmatchcase(path, p) for p in INSTRUCTOR_ONLY_PATHS)


def _is_other_backend(path: str) -> bool:
    return (path.startswith(BACKENDS_DIR) and path.endswith(".py") and path != REFERENCE_BACKEND
            and path != BACKENDS_DIR + "__init__.py")


def _top_level_functions(tree):
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def exercise_kernels(reference_source: str) -> dict[str, list[str]]:
    """``{kernel: [exercise ids]}``: the reference backend's public functions that are an exercise or call one.

    ``global_avg_max_pool_backward`` is the sum of exercises 1.1 and 1.2, so its fused Numba and CUDA versions
    hold those formulas too.
    """
    tree = ast.parse(reference_source, REFERENCE_BACKEND)
    functions = _top_level_functions(tree)
    own = {f.name: f.id for f in exercise_functions(reference_source, REFERENCE_BACKEND)}
    calls = {name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in functions}
             for name, node in functions.items()}
    kernels = {}
    for name in functions:
        if name.startswith("_"):
            continue
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += calls[current]
        ids = sorted(own[f] for f in seen if f in own)
        if ids:
            kernels[name] = ids
    return kernels


def _definition_spans(tree, names) -> dict[str, tuple[int, int]]:
    """0-based ``[first, last]`` line spans (decorators included) of the top-level functions in ``names``."""
    return {node.name: (min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1, node.end_lineno - 1)
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names}


def _unused_private_functions(texts: dict[str, str]) -> set[tuple[str, str]]:
    """``(path, name)`` of private top-level functions of ``texts``' other-backend files named nowhere else."""
    unused = set()
    for path, text in texts.items():
        if not _is_other_backend(path):
            continue
        tree = ast.parse(text, path)
        lines = text.splitlines(keepends=True)
        private = [n for n in _top_level_functions(tree) if n.startswith("_")]
        for name, (first, last) in _definition_spans(tree, private).items():
            pattern = re.compile(rf"\b{re.escape(name)}\b")
            elsewhere = "".join(lines[:first] + lines[last + 1 :])
            if not pattern.search(elsewhere) and not any(pattern.search(t) for p, t in texts.items() if p != path):
                unused.add((path, name))
    return unused


def without_twins(texts: dict[str, str]) -> dict[str, str]:
    """``texts`` (path -> edition source of every shipped .py file) with the exercises' twins deferred.

    In every backend file but the reference, a top-level function named like a kernel of
    :func:`exercise_kernels` becomes ``from <reference> import <name>``: the Numba and CUDA backends run the
    student's NumPy code for those formulas. Private helpers that only the removed functions used are removed
    as well; helpers that were already unused (the kernel an exercise region launches) stay.
    """
    kernels = exercise_kernels(texts[REFERENCE_BACKEND])
    module = REFERENCE_BACKEND[: -len(".py")].replace("/", ".")
    before = _unused_private_functions(texts)
    texts = dict(texts)
    for path, text in texts.items():
        if not _is_other_backend(path):
            continue
        lines = text.splitlines(keepends=True)
        spans = _definition_spans(ast.parse(text, path), kernels)
        for name, (first, last) in sorted(spans.items(), key=lambda item: -item[1][0]):
            exercises = ", ".join(kernels[name])
            lines[first : last + 1] = [f"from {module} import {name}  # the student edition runs your NumPy "
                                       f"exercise {exercises} here too\n"]
        texts[path] = "".join(lines)
    while True:
        removable = _unused_private_functions(texts) - before
        if not removable:
            return texts
        for path in {p for p, _ in removable}:
            text = texts[path]
            lines = text.splitlines(keepends=True)
            spans = _definition_spans(ast.parse(text, path), {n for p, n in removable if p == path})
            for first, last in sorted(spans.values(), reverse=True):
                # the blank lines that separated the removed function from the next definition go with it
                while last + 1 < len(lines) and not lines[last + 1].strip():
                    last += 1
                del lines[first : last + 1]
            texts[path] = "".join(lines)


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


def edition_contents(root=REPOSITORY) -> dict[str, bytes]:
    """``{path in the edition: bytes}`` for the student edition of ``root`` (the reference's tracked files)."""
    root = pathlib.Path(root)
    tracked = tracked_files(root)
    replaced = {RENAMED[p] for p in tracked if p in RENAMED}
    contents = {RENAMED.get(p, p): student_version(p, (root / p).read_bytes())
                for p in tracked if not _is_instructor_only(p) and p not in replaced}
    sources = {p: data.decode("utf-8") for p, data in contents.items() if p.endswith(".py")}
    if REFERENCE_BACKEND in sources:
        for path, text in without_twins(sources).items():
            if text != sources[path]:
                compile(text, path, "exec")
                contents[path] = text.encode("utf-8")
    return contents


def write_edition(dest, root=REPOSITORY) -> list[str]:
    """Write the student edition of ``root`` into ``dest``; returns the paths written."""
    root, dest = pathlib.Path(root), pathlib.Path(dest)
    contents = edition_contents(root)
    sources = {RENAMED.get(p, p): p for p in tracked_files(root)}
    _prepare(dest, root)
    dest.mkdir(parents=True, exist_ok=True)
    for path, data in contents.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, (root / sources[path]).stat().st_mode & 0o777)
    (dest / STAMP).write_text(STAMP_TEXT)
    return sorted(contents)


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
          f"NotImplementedError.\nNext: cd {args.dest} && make test (set-up check: passes, with the tests of "
          "unwritten exercises skipped), then make lab and open 00_welcome; make grade scores the exercises.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
