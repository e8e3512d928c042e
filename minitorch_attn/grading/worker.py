"""The student's process: imports the package, runs the graded calls of ONE exercise, sends back plain data.

Started by the judge (:mod:`minitorch_attn.grading.student`) as
``python .../grading/worker.py --exercise 2.1 ...`` in a process group of its own.
It never decides pass or fail: it answers each request (a function of a graded
test file and its arguments) with the function's value or the exception it
raised, as :mod:`~minitorch_attn.grading.wire` data, and whether the call broke
the leak rule (:mod:`~minitorch_attn.grading.leaks`). Every exercise but the
graded one runs its trusted stand-in.

Whatever happens here (a crash, ``os._exit``, an endless loop, a patched
grader object) stays here: the judge reads only the replies on its pipe.
"""
from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import json
import os
import pathlib
import sys
import traceback

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE_DIR = HERE.parent
ROOT = PACKAGE_DIR.parent


def _load(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _where(error) -> str:
    """``"nn/cbam.py:51"`` for a SyntaxError, else the deepest frame of the package outside the grader."""
    if isinstance(error, SyntaxError) and error.filename:
        path = pathlib.Path(error.filename)
        shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        return f"{shown}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if pathlib.Path(f.filename).is_relative_to(PACKAGE_DIR)
            and not pathlib.Path(f.filename).is_relative_to(HERE)]
    frame = (ours or frames or [None])[-1]
    return "" if frame is None else f"{pathlib.Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def describe(error: BaseException) -> dict:
    message = error.msg if isinstance(error, SyntaxError) else str(error)
    if isinstance(error, SystemExit):
        message = f"sys.exit({error.code!r}) was called"
    return {"type": type(error).__name__, "message": (message.strip().splitlines() or [""])[0],
            "where": _where(error)}


def _graded_function(path: str, name: str, loaded={}):
    if path not in loaded:
        loaded[path] = _load(f"_graded_{len(loaded)}_{pathlib.Path(path).stem}", pathlib.Path(path))
    return getattr(loaded[path], name)


def _prepare(exercise_id: str, replace):
    """Import the package, install the stand-ins; returns ``(exercise function or None, its module)``."""
    from minitorch_attn.exercise import REGISTRY
    from minitorch_attn.grading import isolation, leaks, regions

    module = regions.exercise_modules().get(exercise_id)
    errors = isolation.load_exercises()
    if module in errors:
        raise errors[module]
    entry = REGISTRY[exercise_id]
    chosen = entry.function
    if replace == "trusted":
        chosen = isolation.trusted_replacements(None)[exercise_id]
    elif replace:
        chosen = isolation.edited_exercise(exercise_id, [tuple(edit) for edit in replace])
    for other, function in isolation.trusted_replacements(exercise_id).items():
        REGISTRY[other].override = leaks.stand_in(function)
    entry.override = chosen
    # The trusted stand-in is the grader's own code: only the student's (or a planted) version is watched.
    return (None if replace == "trusted" else chosen), entry.module


def serve(requests: int, replies: int, exercise_id: str, replace) -> None:
    wire = _load("_grading_wire", HERE / "wire.py")
    sys.path[0] = str(ROOT)  # the package of this edition, not the grading folder
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        # One Python thread per simulated CUDA thread: switching the GIL often speeds up the barriers.
        sys.setswitchinterval(1e-4)
    try:
        watched, module = _prepare(exercise_id, replace)
        from minitorch_attn.grading.leaks import CallWatch
    except BaseException as error:  # a syntax error, or sys.exit() at import: say so, then stop
        wire.send(replies, {"import_error": describe(error)})
        os._exit(0)
    wire.send(replies, {"ready": True})
    while True:
        try:
            request = wire.receive(requests)
        except EOFError:
            os._exit(0)  # the judge is done; atexit hooks do not run
        if "replace" in request:  # the judge reuses this process for another version of the exercise
            try:
                watched, module = _prepare(exercise_id, request["replace"])
                wire.send(replies, {"ready": True})
            except BaseException as error:
                wire.send(replies, {"import_error": describe(error)})
            continue
        path, name = request["call"]
        reply = {}
        watch = CallWatch(watched, module) if watched is not None else None
        try:
            function = _graded_function(path, name)
            if watch is None:
                reply["value"] = function(*request["args"], **request["kwargs"])
            else:
                with watch:
                    reply["value"] = function(*request["args"], **request["kwargs"])
        except BaseException as error:
            reply = {"error": describe(error)}
        if watch is not None and watch.found:
            reply["leak"] = watch.found
        try:
            wire.send(replies, reply)
        except Exception as error:  # a value that cannot be written
            wire.send(replies, {"error": describe(error)})


def _die_with_the_judge() -> None:
    """Linux: SIGKILL this process when the judge dies, even in the middle of an endless loop."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass  # elsewhere the judge's kill of the process group has to do


def main() -> None:
    _die_with_the_judge()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercise", required=True)
    parser.add_argument("--requests", type=int, required=True, help="file descriptor the judge writes to")
    parser.add_argument("--replies", type=int, required=True, help="file descriptor the judge reads")
    parser.add_argument("--crash-log", required=True, help="where faulthandler writes a crash's traceback")
    parser.add_argument("--replace", help='"trusted", or JSON [[old, new], ...]: edits of the solution region')
    args = parser.parse_args()
    crash_log = open(args.crash_log, "w")  # kept open for the life of the process
    faulthandler.enable(crash_log, all_threads=False)
    replace = args.replace if args.replace in (None, "trusted") else json.loads(args.replace)
    serve(args.requests, args.replies, args.exercise, replace)


if __name__ == "__main__":
    main()
