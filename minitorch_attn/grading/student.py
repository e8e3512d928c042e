"""The judge's handle on one exercise's student process: start it, call into it, and kill it.

The process (:mod:`minitorch_attn.grading.worker`) runs in a session, hence a
process group, of its own. A reply that does not come by the deadline gets the
whole group SIGKILLed: an endless loop in ``@njit``/``prange`` code holds the
GIL-free threads that no signal handler inside the process could stop. A
process that dies (a segfault, the OOM killer, ``os._exit``) is described in one
line from its exit status and, after a crash, faulthandler's traceback.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import wire

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]

_SIGNALS = {
    signal.SIGSEGV: "crashed: segmentation fault",
    signal.SIGBUS: "crashed: bus error",
    signal.SIGFPE: "crashed: arithmetic error (SIGFPE)",
    signal.SIGILL: "crashed: illegal instruction",
    signal.SIGABRT: "crashed: aborted (SIGABRT)",
    signal.SIGKILL: "killed by SIGKILL (out of memory?)",
}
#: Seconds at least for the package's import (torch and numba on a busy machine), whatever the test limit.
IMPORT_TIMEOUT = 60
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<name>\S+)')


class StudentGone(Exception):
    """The student's process is gone (crash, kill, exit, timeout): the rest of the exercise cannot run."""


class StudentError(Exception):
    """An exception raised in the student's process, as plain data: type name, first line, where."""

    def __init__(self, type_name: str, message: str, where: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message, self.where = type_name, message, where


class RuleBroken(Exception):
    """The graded call reached into another backend, the grader or PyTorch."""


class StudentProcess:
    def __init__(self, exercise_id: str, *, timeout: float, cudasim=False, replace=None, root=ROOT):
        self.exercise_id, self.timeout, self.root = exercise_id, timeout, pathlib.Path(root)
        self.scratch = pathlib.Path(tempfile.mkdtemp(prefix=f"grade-{exercise_id}-"))
        self.crash_log = self.scratch / "crash.txt"
        self.gone = None  # the one line that says why the process is no longer there
        to_worker, self._requests = os.pipe()
        self._replies, from_worker = os.pipe()
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "PYTHONPATH")}
        env.update(PYTHONPATH=str(root), PYTHONFAULTHANDLER="")
        if cudasim:
            env["NUMBA_ENABLE_CUDASIM"] = "1"
        command = [sys.executable, str(pathlib.Path(root) / "minitorch_attn" / "grading" / "worker.py"),
                   "--exercise", exercise_id, "--requests", str(to_worker), "--replies", str(from_worker),
                   "--crash-log", str(self.crash_log)]
        if replace is not None:
            command += ["--replace", replace if replace == "trusted" else json.dumps(replace)]
        with open(self.scratch / "output.txt", "wb") as output:
            self.process = subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT, pass_fds=(to_worker, from_worker),
                                            start_new_session=True)
        os.close(to_worker)
        os.close(from_worker)
        self.import_error = None
        limit = max(timeout, IMPORT_TIMEOUT)
        self._ready(self._receive(time.monotonic() + limit, "while importing the package", limit))

    def _ready(self, reply):
        if "import_error" in reply:
            self.import_error = reply["import_error"]
            self.close()

    def reset(self, replace):
        """Run another version of the exercise (see ``worker.py --replace``) in this same process."""
        self._send({"replace": replace})
        self._ready(self._receive(time.monotonic() + self.timeout, "while installing the exercise"))

    def _send(self, request):
        try:
            wire.send(self._requests, request)
        except BrokenPipeError:
            self._died()

    def call(self, function, args, kwargs, deadline: float):
        """``function(*args, **kwargs)`` in the student's process; ``function`` is a graded test file's."""
        if self.gone:
            raise StudentGone(self.gone)
        self._send({"call": [function.__code__.co_filename, function.__name__],
                    "args": list(args), "kwargs": dict(kwargs)})
        reply = self._receive(deadline, "")
        if "leak" in reply:
            raise RuleBroken(f"not allowed: {reply['leak']} (an exercise may not use another backend, "
                             "the grader or PyTorch)")
        if "error" in reply:
            error = reply["error"]
            raise StudentError(error["type"], error["message"], error["where"])
        return reply["value"]

    def _receive(self, deadline, doing, limit=None):
        try:
            return wire.receive(self._replies, deadline)
        except TimeoutError:
            self.kill()
            doing = f" {doing}" if doing else ""
            self.gone = f"killed after {limit or self.timeout:g} s{doing}: an endless loop, or far too slow?"
        except (EOFError, OSError):
            self._died()
        except Exception as error:  # not a wire message: something in the process wrote to the judge's pipe
            self.kill()
            self.gone = f"sent a reply the judge cannot read ({type(error).__name__})"
        raise StudentGone(self.gone)

    def _died(self):
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the pipe closed but the process lives on
            self.kill()
            code = self.process.returncode
        self.kill()
        if code < 0:
            name = _SIGNALS.get(-code) or f"killed by {signal.Signals(-code).name}"
            self.gone = name + self._crash_site()
        else:
            self.gone = f"exited with status {code} before reporting (os._exit or sys.exit in the code?)"
        raise StudentGone(self.gone)

    def _crash_site(self) -> str:
        """`` at numpy_backend.py:40 in f``: the innermost frame of faulthandler's dump in the package."""
        try:
            text = self.crash_log.read_text(errors="replace")
        except OSError:
            return ""
        package = str(self.root / "minitorch_attn")
        for match in _FRAME.finditer(text):  # most recent call first
            if match["file"].startswith(package) and "/grading/" not in match["file"]:
                name = pathlib.Path(match["file"]).name
                hint = " (an index out of range in Numba code?)" if "numba" in name else ""
                return f" at {name}:{match['line']} in {match['name']}{hint}"
        return ""

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()

    def close(self):
        for fd in (self._requests, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        self._requests = self._replies = -1
        self.kill()  # also whatever the student's code started in the group
        shutil.rmtree(self.scratch, ignore_errors=True)
