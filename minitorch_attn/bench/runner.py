"""The parent process: starts every check and measurement group as a child with a fixed environment,
then joins their numbers into entries (ratio vs PyTorch, memory-traffic floor) and goals."""
from __future__ import annotations

import datetime
import json
import os
import platform
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np

from .measure import summarise
from .ops_cases import OP_CASES, REDUCTION
from .step_cases import BATCH, input_shape
from .traffic import PASSES, floor_bytes, floor_ms

SHAPES = ((32, 64, 32, 32), (16, 256, 28, 28), (8, 512, 14, 14))
QUICK_SHAPE = (2, 32, 8, 8)
BLOCKS = ("cbam", "bam")

#: glibc reads these at process start: without them PyTorch's timings swing by 3× with page faults
#: (large temporaries are mmap-ed and unmapped on every call). Both sides get the same settings.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: The issue's goals, checked at float32: (description, backend, case, pass, quantity, comparison, target).
GOALS = (
    ("numba CBAM forward ≥ 1.5× faster than PyTorch", "numba", "cbam", "fwd", "ratio_vs_torch", ">=", 1.5),
    ("numba CBAM forward+backward ≥ 3× faster than PyTorch",
     "numba", "cbam", "fwd+bwd", "ratio_vs_torch", ">=", 3.0),
    ("numba BAM forward+backward ≥ 1.2× faster than PyTorch",
     "numba", "bam", "fwd+bwd", "ratio_vs_torch", ">=", 1.2),
    ("numba CBAM forward within 2.5× of the memory-traffic floor",
     "numba", "cbam", "fwd", "time_over_floor", "<=", 2.5),
    ("numba training step of resnet10 with CBAM at least as fast as PyTorch",
     "numba", "resnet10-cbam", "train step", "ratio_vs_torch", ">=", 1.0),
    ("numba training step of resnet10 with BAM at least as fast as PyTorch",
     "numba", "resnet10-bam", "train step", "ratio_vs_torch", ">=", 1.0),
)
#: Backends whose training step is timed unless --backends names others (NumPy's takes seconds a step).
STEP_BACKENDS = ("numba", "cuda")


class ChildFailed(RuntimeError):
    """A worker process exited with an error (its stderr is in the message)."""


@dataclass
class Settings:
    shapes: tuple = SHAPES
    dtypes: tuple = ("float32",)
    backends: tuple = ()
    cases: tuple = ()
    passes: tuple = PASSES
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    min_time: float = 0.5
    min_reps: int = 20
    warmup_time: float = 0.2
    seed: int = 0
    quick: bool = False
    steps: tuple = ()
    step_threads: tuple = ()
    # Nine rounds each: on a shared 2-core machine the rounds of one case disagree by more than the gaps
    # measured (resnet10-bam at 2 threads: 0.95, 0.83, 1.22), and a median of three follows any one of them.
    step_rounds: int = 9
    block_rounds: int = 9
    child_timeout: float = 1800.0


def child_environment(threads):
    """The parent's environment with the fixed malloc settings and every runtime capped at ``threads``."""
    env = dict(os.environ)
    env.update(MALLOC_ENV)
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    return env


def run_child(spec, settings):
    """Run one worker with ``spec``; returns its JSON result."""
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as folder:
        spec_path, result_path = os.path.join(folder, "spec.json"), os.path.join(folder, "result.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        what = f"{spec['mode']} {spec['side']} {tuple(spec['shape'])} {spec['dtype']} {spec['threads']} threads"
        try:
            done = subprocess.run([sys.executable, "-m", "minitorch_attn.bench.worker", spec_path, result_path],
                                  env=child_environment(spec["threads"]), capture_output=True, text=True,
                                  timeout=settings.child_timeout)
        except subprocess.TimeoutExpired:
            raise ChildFailed(f"{what} ran longer than {settings.child_timeout:.0f} s") from None
        if done.returncode != 0:
            raise ChildFailed(f"{what} exited with {done.returncode}:\n{done.stderr[-4000:]}")
        with open(result_path) as f:
            return json.load(f)


def default_backends():
    """Our backends that can run here, except CUDA under the simulator (it would time Python, not a GPU)."""
    from .. import available_backends

    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    return tuple(b for b in available_backends() if not (b == "cuda" and simulated))


def default_cases():
    return tuple(OP_CASES) + BLOCKS


def machine_info(threads):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "system": platform.platform()}


def machine_slug(machine):
    """A file-name-friendly machine label, e.g. ``amd-epyc-2t``."""
    words = "".join(ch.lower() if ch.isalnum() else "-" for ch in machine["cpu"]).split("-")
    return "-".join(w for w in words if w) + f"-{machine['threads']}t"


def versions():
    found = {"python": platform.python_version()}
    for package in ("numpy", "numba", "numba-cuda", "torch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def run(settings, log=print, command=None):
    """Check, then time, every (shape, dtype) group; returns the results document (schema: the package docstring)."""
    backends = settings.backends or default_backends()
    cases = settings.cases or default_cases()
    document = {
        "schema": 1,
        "machine": machine_info(settings.threads),
        "versions": versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join([os.path.basename(sys.executable), "-m", "minitorch_attn.bench"]),
        "settings": {
            "quick": settings.quick, "threads": settings.threads, "min_time_s": settings.min_time,
            "min_reps": settings.min_reps, "warmup_s": settings.warmup_time, "seed": settings.seed,
            "step_rounds": settings.step_rounds, "block_rounds": settings.block_rounds, "environment": MALLOC_ENV,
            "forward": "train mode, no graph recorded (no_grad on both sides)",
            "forward+backward": "train mode, graph recorded, backward from a fixed random upstream gradient",
        },
        "checks": [], "bandwidth": [], "entries": [], "failures": [],
    }
    for dtype in settings.dtypes:
        for shape in settings.shapes:
            base = dict(shape=list(shape), dtype=dtype, cases=list(cases), passes=list(settings.passes),
                        threads=settings.threads, min_time=settings.min_time, min_reps=settings.min_reps,
                        warmup_time=settings.warmup_time, seed=settings.seed)
            log(f"check  {', '.join(backends)} {shape} {dtype} against PyTorch")
            try:
                checks = run_child(dict(base, mode="check", side="check", backends=list(backends)), settings)
            except ChildFailed as error:
                _fail(document, log, error)
                continue
            document["checks"] += [dict(c, shape=list(shape), dtype=dtype) for c in checks["checks"]]
            timed = []
            for backend in backends:
                mine = [c for c in checks["checks"] if c["backend"] == backend]
                failed = [c["error"] for c in mine if "error" in c]
                for message in failed:
                    _fail(document, log, message)
                if not failed:
                    log(f"  {backend}: max relative error {max(c['max_rel_error'] for c in mine):.2g}")
                    timed.append(backend)
            blocks = [c for c in cases if c in BLOCKS]
            groups = timing_round(document, dict(base, mode="time", cases=[c for c in cases if c not in blocks]),
                                  timed, settings, log, f"{shape} {dtype}")
            if groups is None:
                continue
            rounds = [groups]
            if blocks:
                rounds += time_in_turns(document, dict(base, mode="serve", cases=blocks),
                                        [side for side in groups if side != "torch"], settings.block_rounds,
                                        settings, log, f"{shape} {dtype} blocks")
            join_group(document, rounds, shape, dtype)
    if settings.steps:
        run_steps(document, settings, [b for b in backends if settings.backends or b in STEP_BACKENDS], log)
    document["goals"] = evaluate_goals(document["entries"])
    return document


def run_steps(document, settings, backends, log):
    """The training-step cases: one float64 check against the PyTorch twins, then at each of
    ``settings.step_threads`` the steps timed in turns (:func:`time_in_turns`) for ``settings.step_rounds``
    rounds."""
    from .worker import STEP_CHECK_DTYPE

    shape = list(input_shape())
    base = dict(shape=shape, dtype="float32", steps=list(settings.steps), threads=settings.threads,
                min_time=settings.min_time, min_reps=settings.min_reps, warmup_time=settings.warmup_time,
                seed=settings.seed)
    log(f"check  {', '.join(backends)} training steps {', '.join(settings.steps)} against PyTorch")
    try:
        checks = run_child(dict(base, mode="step-check", side="check", dtype=STEP_CHECK_DTYPE,
                                backends=list(backends)), settings)["checks"]
    except ChildFailed as error:
        _fail(document, log, error)
        return
    document["checks"] += [dict(c, shape=shape, dtype=STEP_CHECK_DTYPE) for c in checks]
    for message in (c["error"] for c in checks if "error" in c):
        _fail(document, log, message)
    timed = [b for b in backends if not any("error" in c for c in checks if c["backend"] == b)]
    for threads in settings.step_threads:
        rounds = time_in_turns(document, dict(base, mode="serve", threads=threads), timed, settings.step_rounds,
                               settings, log, f"training steps, {threads} thread{'s' if threads != 1 else ''}")
        if rounds:
            join_steps(document, rounds, threads, shape)


#: Seconds between one side's turn and the other's: after a parallel region OpenMP's threads spin for a
#: while before they sleep (libgomp: 300,000 turns of a loop), and would take a core from the other side.
HANDOVER_PAUSE_S = 0.05

#: Calls per turn, at least (a turn lasts ``min_time`` otherwise).
CALLS_PER_TURN = 5


def time_in_turns(document, spec, sides, rounds, settings, log, what):
    """Time ``spec``'s jobs (training steps or blocks) on PyTorch and ``sides`` in turn: one ``serve`` worker
    per side (:class:`Server`) that stays up with its jobs built and warm, then ``rounds`` rounds in which
    each job takes its turn on every side, about ``min_time`` of calls each. Returns ``[{side: group}]`` as
    :func:`join_steps` and :func:`join_group` take them ([] when PyTorch's worker or all of ours failed).

    This machine's speed drifts by more than the gaps measured: one side took 188 to 329 ms a step in three
    processes started one after another, and rounds of a process per side, tens of seconds apart, gave
    ratios from 0.75 to 1.39 for one step case. Turns of a second or less, in processes that stay up, put
    the two sides of a round close together; a case's ratio is the median of its rounds'."""
    servers = {}
    try:
        each_side(document, sides, lambda side: start_server(dict(spec, side=side), settings), log,
                  f"start  {{}} {what}", servers)
        if "torch" not in servers or len(servers) < 2:
            return []
        return turns_in_rounds(document, servers, rounds, settings, log, what)
    finally:
        for server in servers.values():
            server.close()


def turns_in_rounds(document, servers, rounds, settings, log, what):
    """``rounds`` rounds of every (case, pass), each side's jobs of it in turn, PyTorch first. A side whose
    process fails is recorded and left out with its round; without PyTorch, or without any of ours, the rounds
    stop."""
    done = []
    tasks = list(dict.fromkeys((job["case"], job["pass"]) for job in servers["torch"].jobs))
    for number in range(1, rounds + 1):
        log(f"time   {what}, round {number} of {rounds}")
        groups = {side: {"threads": server.threads, "timings": []} for side, server in servers.items()}
        for task in tasks:
            for side, server in list(servers.items()):
                for index, job in enumerate(server.jobs):
                    if (job["case"], job["pass"]) != task:
                        continue
                    reps = max(CALLS_PER_TURN, int(np.ceil(settings.min_time * 1e3 / job["ms"])))
                    time.sleep(HANDOVER_PAUSE_S)
                    try:
                        timing = summarise(server.time(index, reps))
                    except ChildFailed as error:
                        _fail(document, log, error)
                        servers.pop(side).close()
                        if "torch" not in servers or len(servers) < 2:
                            return done
                        groups.pop(side)
                        break
                    groups[side]["timings"].append({"case": job["case"], "pass": job["pass"],
                                                    "variant": job["variant"], **timing.as_dict()})
        done.append(groups)
    return done


class Server:
    """One side's ``serve`` worker (:mod:`.worker`): its jobs built and warm, timed on request."""

    def __init__(self, spec, settings):
        self.what = f"serve {spec['side']} {spec['threads']} threads"
        self.timeout = settings.child_timeout
        self.folder = tempfile.TemporaryDirectory(prefix="mt-bench-")
        spec_path = os.path.join(self.folder.name, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        self.errors = open(os.path.join(self.folder.name, "stderr.txt"), "w+")
        self.process = subprocess.Popen([sys.executable, "-m", "minitorch_attn.bench.worker", spec_path, "-"],
                                        env=child_environment(spec["threads"]), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.errors, text=True)
        try:
            ready = self._answer("READY")
        except ChildFailed:
            self.close()
            raise
        #: [{case, pass, variant, ms}]: what the worker times, by index, with a first estimate of a call's ms
        self.threads, self.jobs = ready["threads"], ready["jobs"]

    def time(self, index, reps):
        """Seconds of each of ``reps`` calls of job ``index``."""
        try:
            self.process.stdin.write(f"{index} {reps}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the process is gone: _answer says why
        return self._answer("TIMES")

    def _answer(self, word):
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith(word + " "):
            late = not ready
            self.process.kill()
            self.process.wait()
            self.errors.seek(0)
            problem = f"ran longer than {self.timeout:.0f} s" if late else f"exited with {self.process.returncode}"
            raise ChildFailed(f"{self.what} {problem}:\n{self.errors.read()[-4000:]}")
        return json.loads(line[len(word) + 1:])

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.errors.close()
        self.folder.cleanup()


def start_server(spec, settings):
    return Server(spec, settings)


def timing_round(document, spec, sides, settings, log, what):
    """One timing group per side, PyTorch first, each a child running ``spec``: ``{side: group}``, or None
    when PyTorch's group failed (nothing to compare with). A failed side is recorded and left out."""
    groups = each_side(document, sides, lambda side: run_child(dict(spec, side=side), settings), log,
                       f"time   {{}} {what}", {})
    return groups if "torch" in groups else None


def each_side(document, sides, start, log, line, results):
    """``results[side] = start(side)`` for PyTorch, then ``sides``, logging ``line`` with the side in its
    ``{}`` before each; a side whose child fails is recorded and left out. Returns ``results``, which holds
    what started even when a later side raises something else (the caller closes it)."""
    for side in ["torch"] + list(sides):
        log(line.replace("{}", f"{side:6s}", 1))
        try:
            results[side] = start(side)
        except ChildFailed as error:
            _fail(document, log, error)
    return results


def join_steps(document, rounds, threads, shape):
    """Entries of one thread count's training steps from its timing rounds (``[{side: group}]``): the median
    over rounds of each side's median step, images per second at it, and the median over rounds of the ratio
    to PyTorch's step in the same round (each round's ratio is kept, to show the spread)."""
    timings = {}  # (side, case) -> that side's record of the case in each round it has
    for groups in rounds:
        torch_ms = {record["case"]: record["median_ms"] for record in groups["torch"]["timings"]}
        for side, group in groups.items():
            for record in group["timings"]:
                ratio = torch_ms[record["case"]] / record["median_ms"]
                timings.setdefault((side, record["case"]), []).append((record, ratio))
    for (side, case), records in timings.items():
        median_ms = float(np.median([record["median_ms"] for record, _ in records]))
        entry = {
            "name": case, "kind": "step", "shape": shape, "dtype": "float32", "pass": records[0][0]["pass"],
            "backend": side, "median_ms": median_ms,
            "iqr_ms": float(np.median([record["iqr_ms"] for record, _ in records])),
            "reps": sum(record["reps"] for record, _ in records), "threads": threads,
            "ratio_vs_torch": float(np.median([ratio for _, ratio in records])),
            "round_ms": [record["median_ms"] for record, _ in records],
            "round_ratios": [ratio for _, ratio in records],
            "img_per_s": BATCH / (median_ms * 1e-3), "floor_ms": None, "time_over_floor": None,
        }
        if side == "torch":
            entry["torch_variant"] = records[0][0]["variant"]
        document["entries"].append(entry)


def _fail(document, log, problem):
    """Record a failed check or crashed group; the run goes on with the other groups and exits non-zero."""
    document["failures"].append(str(problem))
    log(f"  FAILED {problem}")


def join_group(document, rounds, shape, dtype):
    """Entries of one (shape, dtype) from its timing rounds (``[{side: group}]``; the first has the ops and the
    copy bandwidths, the later ones the blocks, timed in turns). PyTorch's reference per (case, pass) is its
    formulation with the lowest median over the rounds; an entry's ms is the median of its rounds', its ratio
    the median over rounds of the reference's ms in that round / ours (each round's ms and ratio are kept when
    there are several)."""
    bandwidths = {side: g["copy_gb_per_s"] for side, g in rounds[0].items() if "copy_gb_per_s" in g}
    document["bandwidth"] += [dict(shape=list(shape), dtype=dtype, side=side, gb_per_s=value)
                              for side, value in bandwidths.items()]
    best_bandwidth = max(bandwidths.values()) if bandwidths else None
    torch_ms = [{} for _ in rounds]  # per round: {(case, pass): {variant: ms}}
    for number, groups in enumerate(rounds):
        for record in groups["torch"]["timings"]:
            torch_ms[number].setdefault((record["case"], record["pass"]), {})[record["variant"]] = record["median_ms"]
    order = list(dict.fromkeys(key for ms in torch_ms for key in ms))  # the cases' order, passes in PASSES order
    reference = {}  # (case, pass) -> (variant, {variant: median ms over the rounds})
    for key in order:
        timed_variants = dict.fromkeys(variant for ms in torch_ms if key in ms for variant in ms[key])
        medians = {variant: float(np.median([ms[key][variant] for ms in torch_ms if key in ms]))
                   for variant in timed_variants}
        reference[key] = (min(medians, key=medians.get), medians)
    timed = {}  # (side, case, pass) -> [(round, group threads, record)]
    for number, groups in enumerate(rounds):
        for side, group in groups.items():
            for record in group["timings"]:
                key = (record["case"], record["pass"])
                if side != "torch" or record["variant"] == reference[key][0]:
                    timed.setdefault((side,) + key, []).append((number, group["threads"], record))
    entries = []
    for (side, case, pass_name), records in timed.items():
        variant, medians = reference[(case, pass_name)]
        round_ms = [record["median_ms"] for _, _, record in records]
        round_ratios = [torch_ms[number][(case, pass_name)][variant] / record["median_ms"]
                        for number, _, record in records]
        entry = {
            "name": case, "kind": "block" if case in BLOCKS else "op",
            "shape": list(shape), "dtype": dtype, "pass": pass_name, "backend": side,
            "median_ms": float(np.median(round_ms)),
            "iqr_ms": float(np.median([record["iqr_ms"] for _, _, record in records])),
            "reps": sum(record["reps"] for _, _, record in records), "threads": records[0][1],
            "ratio_vs_torch": float(np.median(round_ratios)), "floor_ms": None, "time_over_floor": None,
        }
        if len(records) > 1:
            entry["round_ms"], entry["round_ratios"] = round_ms, round_ratios
        if side == "torch":
            entry["torch_variant"], entry["torch_variants_ms"] = variant, medians
        nbytes = floor_bytes(case, pass_name, shape, dtype, REDUCTION)
        if nbytes is not None and best_bandwidth:
            entry["floor_ms"] = floor_ms(nbytes, best_bandwidth)
            entry["time_over_floor"] = entry["median_ms"] / entry["floor_ms"]
        entries.append(entry)
    entries.sort(key=lambda e: order.index((e["name"], e["pass"])))  # stable: backends keep their order
    document["entries"] += entries


def evaluate_goals(entries):
    """The GOALS at each of the issue's shapes (and thread counts, for the steps) that was measured
    (a --quick run has none)."""
    goals = []
    for description, backend, case, pass_name, quantity, comparison, target in GOALS:
        for entry in entries:
            wanted = (backend, case, pass_name, "float32")
            if (entry["backend"], entry["name"], entry["pass"], entry["dtype"]) != wanted \
                    or (entry["kind"] != "step" and tuple(entry["shape"]) not in SHAPES):
                continue
            value = entry[quantity]
            if value is None:
                continue
            met = value >= target if comparison == ">=" else value <= target
            goals.append(dict(goal=description, shape=entry["shape"], threads=entry["threads"], quantity=quantity,
                              value=value, target=f"{comparison} {target}", met=met))
    return goals

