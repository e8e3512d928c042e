"""Running one table: every variant × seed trained once, each result written atomically and never twice.

The contract of a run (what makes results trustworthy and resumable):

* A result is the file ``<results>/<experiment>/<variant>-seed<k>.json``. It is written in one
  ``os.replace`` after the run finished, so a file that exists is a finished run; an interrupted run leaves
  only its checkpoint under ``<results>/<experiment>/.partial/`` and continues from it next time.
* A finished result whose recorded configuration differs from today's (another budget, another model
  option) is stale: it is re-run and replaced, and the runner says so.
* Each (variant, seed) trains in its own child process (``--jobs`` at a time, one Numba thread each), so a
  crash or a diverging run costs that run only; the others go on and the command ends non-zero.
* One seed controls the model's initialisation, the data order and the augmentation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from ..files import write_atomic
from . import localisation, tables

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "data" / "results"


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much data, model and training one run gets. ``FULL`` is what the committed results used;
    ``QUICK`` is the smoke version for tests and lessons (about a second per run).

    Why FULL is this small: the 75 distinct runs of all tables (25 configurations × 3 seeds) had to train in
    about an hour on 2 cores shared with other work, four runs side by side. Every training source digit
    once (1,258 images), three epochs, and Adam (which gets further than SGD in so few steps: 65 % vs 43 %
    validation accuracy after 10,000 images in a probe) at widths 8–64 leave the networks far from
    convergence, so gaps between variants are small beside the seed-to-seed spread; the report says so row
    by row. ``eval_images`` = 720 is the whole validation split and half the test split.
    """

    dataset: str = "cluttered-digits"
    train_images: int | None = 1258   # None: the whole training split
    eval_images: int | None = 720     # None: the whole validation and test splits
    widths: tuple = (8, 16, 32, 64)
    mobilenet_config: tuple = ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (64, 2))
    epochs: int = 3
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 3e-3
    momentum: float = 0.9             # SGD only
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    shift: int = 2
    dtype: str = "float32"
    backend: str = "numba"


FULL = Budget()
QUICK = Budget(train_images=192, eval_images=64, widths=(8, 8, 16, 16),
               mobilenet_config=((8, 1), (16, 2), (16, 2)), epochs=1)


def build_model(config, budget, in_channels, num_classes):
    """The network of a variant's ``config`` (see :mod:`.tables`) at the budget's widths."""
    from .. import models
    common = dict(num_classes=num_classes, in_channels=in_channels, attention=config["attention"],
                  attention_options=dict(config["attention_options"]),
                  bam_in_every_block=config["bam_in_every_block"])
    if config["backbone"] == "resnet":
        return models.resnet10(widths=tuple(budget.widths), **common)
    if config["backbone"] == "mobilenet":
        stem = budget.mobilenet_config[0][0]
        return models.MobileNet(config=tuple(map(tuple, budget.mobilenet_config)), stem_channels=stem, **common)
    raise ValueError(f"unknown backbone {config['backbone']!r}; expected 'resnet' or 'mobilenet'")


def result_path(results, experiment, variant, seed):
    return pathlib.Path(results) / experiment / f"{variant}-seed{seed}.json"


def run_config(variant, budget):
    """Everything that decides a run's numbers, the seed aside: compared to spot stale results, and to find the
    same run in another table (training is deterministic, so an identical configuration and seed give
    identical numbers: such a result is copied, with ``copied_from`` saying where from, not trained twice)."""
    return _jsonable({"model": variant.model, "budget": dataclasses.asdict(budget)})


def _jsonable(value):
    return json.loads(json.dumps(value, default=list))


def load_result(path):
    """A finished result, or None when the file is missing or unreadable (never a half-written one)."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json_atomic(path, payload):
    text = json.dumps(payload, indent=1) + "\n"
    write_atomic(path, lambda file: file.write(text.encode()))


def check_seeds(seeds):
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be a whole number >= 1, got {seeds!r}")


def check_writable(folder):
    folder = pathlib.Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise PermissionError(f"results folder {folder} is not writable: {error.strerror}") from None


def commit_id():
    """The commit the code ran at, with ``+dirty`` when tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "minitorch_attn") else "")


def machine():
    model = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def train_one(experiment, variant, seed, budget, results, progress=False):
    """Train one (variant, seed) in this process and write its result file; returns the result dict."""
    import numpy as np
    import numba

    from .. import data, nn, set_backend, train
    from ..models import model_report

    set_backend(budget.backend)
    started = time.perf_counter()
    splits = {}
    for split in ("train", "val", "test"):
        dataset = data.load(budget.dataset, split=split)
        limit = budget.train_images if split == "train" else budget.eval_images
        splits[split] = dataset.subset(limit) if limit is not None and limit < len(dataset) else dataset
    nn.manual_seed(seed)
    model = build_model(variant.model, budget, splits["train"].in_channels, splits["train"].num_classes)
    model.to(np.dtype(budget.dtype).type)
    report = model_report(model, splits["train"].images.shape[1:])
    loaders = {split: data.DataLoader(dataset, batch_size=budget.batch_size, shuffle=split == "train", seed=seed,
                                      shift=budget.shift if split == "train" else 0)
               for split, dataset in splits.items()}
    partial = pathlib.Path(results) / experiment.name / ".partial"
    partial.mkdir(parents=True, exist_ok=True)
    # The configuration's hash in the name: a checkpoint of an older budget is never resumed from.
    fingerprint = hashlib.sha256(json.dumps(run_config(variant, budget), sort_keys=True).encode()).hexdigest()[:12]
    checkpoint = partial / f"{variant.name}-seed{seed}-{fingerprint}.npz"
    payload = {"experiment": experiment.name, "variant": variant.name, "config": run_config(variant, budget),
               "seed": seed, "commit": commit_id(),
               "machine": machine(), "threads": numba.get_num_threads(), "params": report["params"],
               "attention_params": report["attention_params"], "macs": report["macs"]}
    # A diverging run raises train.TrainingDiverged here and writes no result: it never counts.
    history = train.fit(model, loaders["train"], loaders["val"], epochs=budget.epochs, optimizer=budget.optimizer,
                        lr=budget.lr, momentum=budget.momentum, weight_decay=budget.weight_decay,
                        schedule=budget.schedule, checkpoint=checkpoint, progress=progress)
    test = train.evaluate(model, loaders["test"])
    payload.update(status="finished", wall_seconds=time.perf_counter() - started, curves=history.epochs,
                   val_accuracy=history.final["val_accuracy"], test_accuracy=test["accuracy"],
                   test_loss=test["loss"], test_error=100.0 * (1.0 - test["accuracy"]))
    payload["localisation"] = localisation.measure(model, splits["test"])
    payload = _jsonable(payload)
    write_json_atomic(result_path(results, experiment.name, variant.name, seed), payload)
    checkpoint.unlink(missing_ok=True)
    return payload


def plan(experiment, seeds, budget, results, variants=None):
    """``(to_run, done, stale, copies)``: the (variant, seed) pairs to train, those finished, those finished
    but stale, and ``[(variant, seed, path)]`` of identical finished runs in other tables' folders."""
    chosen = [experiment.variant(name) for name in variants] if variants else list(experiment.variants)
    finished = {}
    for path in sorted(pathlib.Path(results).glob("*/*-seed*.json")):
        result = load_result(path)
        if result is not None and result.get("status") == "finished" and "copied_from" not in result:
            finished.setdefault((json.dumps(result["config"], sort_keys=True), result["seed"]), path)
    to_run, done, stale, copies = [], [], [], []
    for variant in chosen:
        expected = run_config(variant, budget)
        for seed in range(1, seeds + 1):
            result = load_result(result_path(results, experiment.name, variant.name, seed))
            if result is not None and result.get("status") == "finished" and result.get("config") == expected:
                done.append((variant, seed))
                continue
            if result is not None and result.get("status") == "finished":
                stale.append((variant, seed))
            twin = finished.get((json.dumps(expected, sort_keys=True), seed))
            if twin is not None and twin != result_path(results, experiment.name, variant.name, seed):
                copies.append((variant, seed, twin))
            else:
                to_run.append((variant, seed))
    return to_run, done, stale, copies


def copy_result(source, experiment, variant, seed, results):
    """Record an identical run of another table under this table's name (see :func:`run_config`)."""
    payload = load_result(source)
    payload.update(experiment=experiment.name, variant=variant.name,
                   copied_from=str(pathlib.Path(source).relative_to(results)))
    write_json_atomic(result_path(results, experiment.name, variant.name, seed), payload)


def _run_here(experiment, to_run, budget, results, log):
    """The runs one after the other in this process (tests, lessons): no isolation, no process start-up.

    They use one Numba thread: results do not depend on the thread count, and on a busy machine (a test
    run with several workers) every parallel region of a small run would mostly wait for a core.
    """
    import numba

    from ..train import TrainingDiverged
    failures, threads = 0, numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for variant, seed in to_run:
            began = time.perf_counter()
            try:
                result = train_one(experiment, variant, seed, budget, results)
            except TrainingDiverged as diverged:
                failures += 1
                log(f"  {variant.name} seed {seed}: FAILED ({diverged})")
                continue
            log(f"  {variant.name} seed {seed}: test error {result['test_error']:.2f} % "
                f"({time.perf_counter() - began:.0f} s)")
    finally:
        numba.set_num_threads(threads)
    return failures


def run(name, seeds=3, quick=False, results=None, jobs=1, variants=None, log=print, budget=None):
    """Train every missing (variant, seed) of experiment ``name``; returns the number of failed runs.

    ``jobs``: how many child processes train side by side (0: every run in this process, for tests and
    lessons). ``results``: the folder (default ``data/results``, or ``data/results-quick`` with ``quick``).
    ``budget``: a :class:`Budget` other than FULL / QUICK (in-process runs only: children rebuild theirs from
    ``quick``).
    """
    experiment = tables.get(name)
    check_seeds(seeds)
    if not isinstance(jobs, int) or jobs < 0:
        raise ValueError(f"--jobs must be a whole number >= 0 (0: in this process), got {jobs!r}")
    if budget is not None and jobs:
        raise ValueError("run: a custom budget trains in this process only; pass jobs=0")
    budget = budget or (QUICK if quick else FULL)
    results = pathlib.Path(results) if results is not None else (RESULTS if not quick else RESULTS.parent /
                                                                 "results-quick")
    check_writable(results / experiment.name)
    to_run, done, stale, copies = plan(experiment, seeds, budget, results, variants)
    log(f"{experiment.name}: {len(done)} finished run(s) kept, {len(copies)} copied from identical runs of "
        f"other tables, {len(to_run)} to run" + (f" ({len(stale)} stale: their configuration changed)"
                                                  if stale else "") + f"; results in {results}")
    for variant, seed, source in copies:
        copy_result(source, experiment, variant, seed, results)
    if jobs == 0:
        return _run_here(experiment, to_run, budget, results, log)
    failures = 0
    pending = list(to_run)
    running = []
    while pending or running:
        while pending and len(running) < jobs:
            variant, seed = pending.pop(0)
            command = [sys.executable, "-m", "minitorch_attn.experiments", "_one", experiment.name, variant.name,
                       str(seed), "--results", str(results)] + (["--quick"] if quick else [])
            env = dict(os.environ)
            if jobs > 1:  # runs side by side share the cores instead of each spawning a thread per core
                env["NUMBA_NUM_THREADS"] = "1"
            running.append((variant, seed, time.perf_counter(), subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        time.sleep(0.05)
        for entry in list(running):
            variant, seed, began, process = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            output = process.stdout.read().strip()
            if process.returncode == 0:
                result = load_result(result_path(results, experiment.name, variant.name, seed))
                log(f"  {variant.name} seed {seed}: test error {result['test_error']:.2f} % "
                    f"({time.perf_counter() - began:.0f} s)")
            else:
                failures += 1
                last = output.splitlines()[-1] if output else f"exit status {process.returncode}"
                log(f"  {variant.name} seed {seed}: FAILED ({last})")
    return failures
