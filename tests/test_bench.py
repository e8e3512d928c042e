"""The benchmark harness: a --quick run end to end (schema, not speed), the check before timing, the floor table."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minitorch_attn as mt
from minitorch_attn.backends import numpy_backend
from minitorch_attn.bench import report, runner
from minitorch_attn.bench.__main__ import main as bench_main
from minitorch_attn.bench.measure import measure
from minitorch_attn.bench.ops_cases import OP_CASES
from minitorch_attn.bench.traffic import FLOOR, PASSES, floor_bytes
from minitorch_attn.bench import step_cases, worker
from minitorch_attn.bench.profile import FAMILY_OF, format_profile, profile_step
from minitorch_attn.bench.step_cases import BATCH, TorchStep
from minitorch_attn.bench.worker import BenchmarkMismatch, build_ours, build_theirs, compare

pytest.importorskip("torch")

SMALL = (2, 32, 6, 5)
BACKENDS = [b for b in ("numpy", "numba") if b in mt.available_backends()]
CASES = ("global_avg_max_pool", "cbam")


def test_quick_run_end_to_end(tmp_path):
    """One --quick run on a fused op and a block (the slowest test here: a few child processes), checked by
    the helpers below. One test, so that pytest-xdist cannot start the run once per worker.

    One thread: nothing here is about speed, and a single thread keeps the run short on a busy machine.
    """
    out = tmp_path / "quick.json"
    command = [sys.executable, "-m", "minitorch_attn.bench", "--quick", "--ops", CASES[0], "--blocks", CASES[1],
               "--backends", ",".join(BACKENDS), "--threads", "1", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out) as f:
        document = json.load(f)
    check_schema(document)
    check_checks(document)
    check_printed_rows(done.stdout)
    check_markdown_and_readme(document, tmp_path)


def check_schema(document):
    assert document["schema"] == 1 and document["settings"]["quick"] is True
    assert {"cpu", "cores", "threads"} <= set(document["machine"]) and document["machine"]["threads"] == 1
    assert {"numpy", "numba", "torch"} <= set(document["versions"])
    assert document["settings"]["environment"] == runner.MALLOC_ENV
    assert document["failures"] == [] and document["goals"] == []  # goals are judged at the shapes only
    measured = {(e["name"], e["pass"], e["backend"]) for e in document["entries"]}
    assert measured == {(c, p, b) for c in CASES for p in PASSES for b in ["torch"] + BACKENDS}
    torch_ms = {(e["name"], e["pass"]): e["median_ms"] for e in document["entries"] if e["backend"] == "torch"}
    for entry in document["entries"]:
        assert entry["kind"] == ("block" if entry["name"] == "cbam" else "op")
        assert entry["shape"] == list(runner.QUICK_SHAPE) and entry["dtype"] == "float32"
        assert entry["median_ms"] > 0 and entry["iqr_ms"] >= 0 and entry["reps"] >= 3 and entry["threads"] == 1
        assert entry["ratio_vs_torch"] == pytest.approx(torch_ms[entry["name"], entry["pass"]] / entry["median_ms"])
        assert entry["floor_ms"] > 0
        assert entry["time_over_floor"] == pytest.approx(entry["median_ms"] / entry["floor_ms"])
    torch_rows = [e for e in document["entries"] if e["backend"] == "torch"]
    assert all(e["torch_variant"] in e["torch_variants_ms"] for e in torch_rows)
    assert {b["side"] for b in document["bandwidth"]} == {"torch"} | set(BACKENDS)


def check_checks(document):
    """Every backend and every PyTorch variant was checked before timing."""
    checked = {(c["backend"], c["case"], c["variant"]) for c in document["checks"]}
    assert checked == {(b, c, v) for b in BACKENDS for c in CASES for v in ("amax", "index")}
    assert all(c["max_rel_error"] < 1e-4 for c in document["checks"])


def check_printed_rows(stdout):
    for case in CASES:
        for pass_name in PASSES:
            assert any(line.split()[:2] == [case, pass_name] for line in stdout.splitlines()), stdout


def check_markdown_and_readme(document, tmp_path):
    section = report.markdown(document)
    assert document["machine"]["cpu"] in section
    rows = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert sorted(rows) == sorted([["| case", "pass"]] * 2 + [[f"| {c}", p] for c in CASES for p in PASSES])
    assert section.index("| cbam") < section.index("<details>") < section.index("| global_avg_max_pool")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START_MARKER}\nold table\n{report.END_MARKER}\noutro\n")
    report.update_readme(readme, section)
    text = readme.read_text()
    assert "old table" not in text and section in text
    assert text.startswith("intro\n") and text.endswith(f"{report.END_MARKER}\noutro\n")
    report.update_readme(readme, section)  # idempotent
    assert readme.read_text() == text


def test_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="bench:start"):
        report.update_readme(readme, "table")


def test_latest_results_skips_quick_runs(tmp_path):
    def write(name, date, quick):
        (tmp_path / name).write_text(json.dumps({"date": date, "settings": {"quick": quick}}))

    write("a.json", "2026-01-02T00:00:00+00:00", False)
    write("b.json", "2026-03-01T00:00:00+00:00", False)
    write("c-quick.json", "2026-05-01T00:00:00+00:00", True)
    assert report.latest_results(str(tmp_path)) == str(tmp_path / "b.json")
    with pytest.raises(FileNotFoundError):
        report.latest_results(str(tmp_path / "empty"))


@pytest.mark.parametrize("block", ["cbam", "bam"])
def test_check_catches_mismatched_parameters(block):
    with mt.backend("numpy"):
        ours = build_ours(block, SMALL, "float32", seed=3)
        assert compare(ours, build_theirs(ours, block, "amax" if block == "cbam" else "eager"), "float32",
                       block) < 1e-5
        wrong = build_theirs(ours, block, "amax" if block == "cbam" else "eager", parameter_seed=11)
        with pytest.raises(BenchmarkMismatch, match="refusing to time"):
            compare(ours, wrong, "float32", block)


class _WrongGradient:
    """PyTorch's side with its forward intact and one gradient scaled: only the backward is wrong."""

    def __init__(self, theirs, index):
        self.theirs, self.index = theirs, index

    def forward(self):
        return self.theirs.forward()

    def forward_backward(self):
        outputs, grads = self.theirs.forward_backward()
        grads = list(grads)
        grads[self.index] = grads[self.index] * 1.01
        return outputs, tuple(grads)


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_check_catches_a_wrong_gradient_of_every_op(case):
    with mt.backend("numpy"):
        ours = build_ours(case, SMALL, "float64", seed=5)
        theirs = build_theirs(ours, case, OP_CASES[case].variants[0])
        assert compare(ours, theirs, "float64", case) < 1e-9
        for index in range(len(ours.arrays)):
            with pytest.raises(BenchmarkMismatch, match=f"gradient {index}"):
                compare(ours, _WrongGradient(theirs, index), "float64", case)


def test_unknown_case_and_parameter_seed_on_an_op_are_refused():
    with pytest.raises(ValueError, match="unknown name 'se'"):
        build_ours("se", SMALL, "float32", 0)
    with mt.backend("numpy"):
        ours = build_ours("conv7x7", SMALL, "float32", 0)
    with pytest.raises(ValueError, match="only blocks"):
        build_theirs(ours, "conv7x7", "eager", parameter_seed=1)


def test_floor_table_covers_every_case_and_counts_bytes():
    assert set(FLOOR) == set(OP_CASES) | set(runner.BLOCKS)
    n, c, h, w = shape = (16, 256, 28, 28)
    full, plane = n * c * h * w, n * h * w
    # CBAM forward: 3 reads + 1 write of F, plus the small maps
    assert floor_bytes("cbam", "fwd", shape, "float32", 16) == 4 * (4 * full + 6 * plane)
    assert floor_bytes("cbam", "fwd+bwd", shape, "float64", 16) == 8 * (11 * full + 14 * plane)
    assert floor_bytes("bam", "fwd", shape, "float32", 16) == 4 * (3 * full + 6 * full // 16)
    assert floor_bytes("not_tabulated", "fwd", shape, "float32", 16) is None
    with pytest.raises(ValueError, match="pass_name"):
        floor_bytes("cbam", "bwd", shape, "float32", 16)


def test_child_environment_fixes_malloc_and_threads(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    env = runner.child_environment(3)
    assert env["MALLOC_MMAP_THRESHOLD_"] == "33554432" and env["MALLOC_TRIM_THRESHOLD_"] == "4294967296"
    assert all(env[name] == "3" for name in runner.THREAD_VARIABLES)


def test_measure_reaches_both_minimums():
    calls = []
    result = measure(lambda: calls.append(1), min_time=0.0, min_reps=7, warmup_time=0.0, warmup_reps=2)
    assert result.reps == 7 and len(calls) == 9 and result.median_ms >= 0
    result = measure(lambda: sum(range(1000)), min_time=0.02, min_reps=1, warmup_time=0.0)
    assert result.reps > 1


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "2x3x4"], "NxCxHxW"),
    (["--shapes", "2x8x4x4"], "C >= 16"),
    (["--shapes", "1x16x4x4"], "N >= 2"),
    (["--ops", "nope"], "unknown case"),
    (["--ops", "none", "--blocks", "none", "--steps", "none"], "nothing to time"),
    (["--steps", "resnet99"], "unknown training-step case"),
    (["--step-threads", "0"], "--step-threads"),
    (["--passes", "bwd"], "unknown pass"),
    (["--threads", "0"], "--threads"),
    (["--block-rounds", "0"], "--block-rounds"),
    (["--backends", "nope"], "unknown backend"),
])
def test_bad_command_lines_are_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(argv)
    assert message in str(exit_info.value) + capsys.readouterr().err


def test_a_mismatch_or_a_crash_skips_that_side_and_is_reported(monkeypatch):
    """Orchestration with stand-in children: numpy fails its check (never timed), numba's timing crashes."""
    def timing(case, pass_name, ms, variant=None):
        return {"case": case, "pass": pass_name, "variant": variant, "median_ms": ms, "iqr_ms": 0.0, "reps": 3}

    started = []

    def fake_child(spec, settings):
        started.append((spec["mode"], spec["side"]))
        if spec["mode"] == "check":
            return {"checks": [{"backend": "numpy", "case": "conv7x7", "variant": "eager", "error": "numpy differs"},
                               {"backend": "numba", "case": "conv7x7", "variant": "eager", "max_rel_error": 1e-7}]}
        if spec["side"] == "numba":
            raise runner.ChildFailed("time numba crashed")
        return {"threads": 2, "copy_gb_per_s": 10.0,
                "timings": [timing("conv7x7", p, 2.0, "eager") for p in PASSES]}

    monkeypatch.setattr(runner, "run_child", fake_child)
    settings = runner.Settings(shapes=((2, 4, 8, 8),), backends=("numpy", "numba"), cases=("conv7x7",))
    document = runner.run(settings, log=lambda line: None)
    assert started == [("check", "check"), ("time", "torch"), ("time", "numba")]
    assert document["failures"] == ["numpy differs", "time numba crashed"]
    assert {e["backend"] for e in document["entries"]} == {"torch"}
    assert "FAILED: numpy differs" in report.text_table(document)


class FakeServer:
    """A stand-in for ``runner.Server``: jobs of every step case or block pass (PyTorch's in two variants),
    each call taking ``ms(side, threads, job, turns before)`` milliseconds; records its turns in ``turns``."""

    def __init__(self, spec, ms, turns):
        self.side, self.threads, self.ms, self.turns, self.closed = spec["side"], spec["threads"], ms, turns, False
        variants = ("amax", "index") if self.side == "torch" else (None,)
        self.jobs = [{"case": case, "pass": "train step", "variant": "eager" if self.side == "torch" else None,
                      "ms": 100.0} for case in spec.get("steps", ())]
        self.jobs += [{"case": case, "pass": pass_name, "variant": variant, "ms": 10.0}
                      for case in spec.get("cases", ()) for variant in variants for pass_name in spec["passes"]]

    def time(self, index, reps):
        job = self.jobs[index]
        key = (self.side, self.threads, job["case"], job["pass"], job["variant"])
        before = sum(1 for turn in self.turns if turn[:5] == key)
        self.turns.append(key + (reps,))
        return [self.ms(self.side, self.threads, job, before) / 1e3] * reps

    def close(self):
        self.closed = True


def fake_servers(monkeypatch, ms):
    """Patch ``runner.start_server`` with FakeServers; returns (the servers started, the turns taken)."""
    servers, turns = [], []
    monkeypatch.setattr(runner, "start_server", lambda spec, settings: servers.append(
        FakeServer(spec, ms, turns)) or servers[-1])
    monkeypatch.setattr(runner, "HANDOVER_PAUSE_S", 0.0)
    return servers, turns


def test_blocks_are_timed_in_turns_and_judged_on_paired_ratios(monkeypatch):
    """Orchestration with stand-ins: a process per side times the ops (and the copy bandwidth), then a server
    per side times the blocks in rounds, each pass's PyTorch variants and ours in turn; a block's ratio is the
    median of its ratios to PyTorch's time in the same round (not the ratio of the medians), PyTorch's
    reference is the formulation fastest over the rounds."""
    started = []

    def fake_child(spec, settings):
        started.append((spec["mode"], spec["side"], tuple(spec["cases"])))
        if spec["mode"] == "check":
            return {"checks": [{"backend": "numba", "case": c, "variant": "v", "max_rel_error": 1e-7}
                               for c in spec["cases"]]}
        timings = []
        for case in spec["cases"]:
            for pass_name in PASSES:
                if spec["side"] == "torch":
                    timings += [{"case": case, "pass": pass_name, "variant": v, "median_ms": ms, "iqr_ms": 0.5,
                                 "reps": 4} for v, ms in (("amax", 10.0), ("index", 12.0))]
                else:
                    timings.append({"case": case, "pass": pass_name, "variant": None, "median_ms": 5.0,
                                    "iqr_ms": 0.5, "reps": 4})
        return {"threads": 2, "copy_gb_per_s": 50.0, "timings": timings}

    def block_ms(side, threads, job, before):
        if side == "torch":
            return {"amax": (10.0, 40.0, 20.0), "index": (12.0, 44.0, 18.0)}[job["variant"]][before]
        return (5.0, 10.0, 10.0)[before]

    monkeypatch.setattr(runner, "run_child", fake_child)
    servers, turns = fake_servers(monkeypatch, block_ms)
    settings = runner.Settings(shapes=((32, 64, 32, 32),), backends=("numba",), cases=("conv7x7", "cbam"),
                               block_rounds=3, min_time=0.5)
    document = runner.run(settings, log=lambda line: None)
    assert started == [("check", "check", ("conv7x7", "cbam")), ("time", "torch", ("conv7x7",)),
                       ("time", "numba", ("conv7x7",))]
    assert [server.side for server in servers] == ["torch", "numba"] and all(s.closed for s in servers)
    # per round: each pass, PyTorch's two variants then ours, half a second of 10 ms calls each
    assert turns == [(side, 2, "cbam", pass_name, variant, 50) for _ in range(3) for pass_name in PASSES
                     for side, variant in (("torch", "amax"), ("torch", "index"), ("numba", None))]
    entries = {(e["name"], e["pass"], e["backend"]): e for e in document["entries"]}
    ours, theirs = entries[("cbam", "fwd", "numba")], entries[("cbam", "fwd", "torch")]
    # medians over the rounds: amax 20, index 18 -> index is the reference; its rounds: 12, 44, 18
    assert theirs["torch_variant"] == "index" and theirs["median_ms"] == 18.0
    assert ours["round_ratios"] == pytest.approx([2.4, 4.4, 1.8]) and ours["round_ms"] == [5.0, 10.0, 10.0]
    assert ours["ratio_vs_torch"] == pytest.approx(2.4) and ours["median_ms"] == 10.0  # not 18 / 10
    assert ours["reps"] == 150 and ours["kind"] == "block"
    op = entries[("conv7x7", "fwd", "numba")]
    assert "round_ratios" not in op and op["ratio_vs_torch"] == pytest.approx(2.0)  # amax 10 / 5, one round
    assert document["bandwidth"][0]["gb_per_s"] == 50.0
    goal = next(g for g in document["goals"] if g["goal"].startswith("numba CBAM forward ≥"))
    assert goal["value"] == pytest.approx(2.4) and goal["met"]
    assert "2.40 (2.40 4.40 1.80)" in report.text_table(document)
    assert "blocks timed in 3 rounds" in report.markdown(document)


def test_a_failed_server_is_recorded_and_the_others_go_on(monkeypatch):
    """Ours failing in the middle of the rounds: a failure in the document, its finished rounds kept, the
    servers closed."""

    def fake_child(spec, settings):
        if spec["mode"] == "check":
            return {"checks": [{"backend": "numba", "case": "cbam", "variant": "v", "max_rel_error": 1e-7}]}
        return {"threads": 2, "copy_gb_per_s": 50.0, "timings": []}

    def block_ms(side, threads, job, before):
        if side == "numba" and before == 2:
            raise runner.ChildFailed("serve numba 2 threads exited with -11")
        return 10.0

    monkeypatch.setattr(runner, "run_child", fake_child)
    servers, _ = fake_servers(monkeypatch, block_ms)
    settings = runner.Settings(shapes=((32, 64, 32, 32),), backends=("numba",), cases=("cbam",), block_rounds=4,
                               passes=("fwd",))
    document = runner.run(settings, log=lambda line: None)
    assert document["failures"] == ["serve numba 2 threads exited with -11"]
    ours = next(e for e in document["entries"] if e["backend"] == "numba")
    assert ours["round_ratios"] == [1.0, 1.0]
    assert all(server.closed for server in servers)


def test_timing_our_side_never_loads_torch():
    """PyTorch's OpenMP runtime must stay out of our timing processes."""
    program = (
        "import sys\n"
        "from minitorch_attn.bench import worker\n"
        "spec = dict(mode='time', side='numpy', shape=[2, 16, 4, 4], dtype='float32', cases=['cbam', 'conv7x7'],\n"
        "            passes=['fwd', 'fwd+bwd'], threads=1, min_time=0.0, min_reps=1, warmup_time=0.0, seed=0)\n"
        "assert len(worker.time_group(spec)['timings']) == 4\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


STEP_BACKEND = "numba" if "numba" in BACKENDS else "numpy"


def test_training_step_check_passes_and_catches_a_wrong_gradient(monkeypatch):
    """One float64 step of a whole network against its PyTorch twin; a twin with one gradient off fails.
    (A batch of 4 at 8×8 keeps the test short; the bench runs 64 at 32×32.)"""
    monkeypatch.setattr(step_cases, "BATCH", 4)
    monkeypatch.setattr(step_cases, "IMAGE_SIZE", 8)
    spec = {"backends": [STEP_BACKEND], "steps": ["mobilenet-cbam"], "seed": 0}
    (record,) = worker.step_check_group(spec)["checks"]
    assert record["max_rel_error"] <= worker.STEP_CHECK_TOLERANCE, record
    right = TorchStep.gradients

    def one_gradient_off(self):
        grads = right(self)
        key = sorted(grads)[-1]
        grads[key] = grads[key] * 1.001
        return grads

    monkeypatch.setattr(TorchStep, "gradients", one_gradient_off)
    (record,) = worker.step_check_group(spec)["checks"]
    assert "refusing to time" in record["error"] and "gradient of" in record["error"]


def test_training_steps_are_joined_reported_and_judged(monkeypatch):
    """Orchestration with stand-ins: a check, then per thread count a process per side, timed in rounds,
    PyTorch and numba in turn; a step's ratio is the median of the rounds' ratios, each against PyTorch in
    the same round."""
    started = []

    def fake_child(spec, settings):
        started.append((spec["mode"], spec["side"], spec["threads"]))
        return {"checks": [{"backend": "numba", "case": c, "variant": "step", "max_rel_error": 1e-12}
                           for c in spec["steps"]]}

    def step_ms(side, threads, job, before):
        return 100.0 + 20.0 * before if side == "torch" else 80.0 if threads == 2 else 200.0

    monkeypatch.setattr(runner, "run_child", fake_child)
    servers, turns = fake_servers(monkeypatch, step_ms)
    settings = runner.Settings(shapes=(), backends=("numba",), cases=(), steps=("resnet10-cbam",),
                               step_threads=(1, 2), step_rounds=2)
    document = runner.run(settings, log=lambda line: None)
    assert started == [("step-check", "check", settings.threads)]
    assert [(server.side, server.threads) for server in servers] == [
        (side, threads) for threads in (1, 2) for side in ("torch", "numba")]
    assert [(side, threads, reps) for side, threads, *_, reps in turns] == [
        (side, threads, runner.CALLS_PER_TURN) for threads in (1, 2) for _ in range(2) for side in ("torch", "numba")]
    assert all(server.closed for server in servers)
    numba_rows = {e["threads"]: e for e in document["entries"] if e["backend"] == "numba"}
    assert numba_rows[2]["round_ratios"] == pytest.approx([1.25, 1.5])
    assert numba_rows[2]["ratio_vs_torch"] == pytest.approx(1.375) and numba_rows[1]["ratio_vs_torch"] == 0.55
    assert numba_rows[2]["img_per_s"] == pytest.approx(BATCH / 0.08) and numba_rows[2]["kind"] == "step"
    torch_rows = {e["threads"]: e for e in document["entries"] if e["backend"] == "torch"}
    assert torch_rows[1]["median_ms"] == 110.0 and torch_rows[1]["round_ms"] == [100.0, 120.0]
    goals = {(g["threads"], g["met"]) for g in document["goals"]}
    assert goals == {(1, False), (2, True)}
    text = report.text_table(document)
    assert "MISSED numba training step of resnet10 with CBAM" in text and "1 thread:" in text
    assert any(line.split()[:3] == ["resnet10-cbam", "2", "110"] for line in text.splitlines()), text
    section = report.markdown(document)
    assert "| resnet10-cbam | 1 | 110 | 582 | 200 | 320 | 0.55 | 0.50 0.60 |" in section
    assert "2 rounds" in section


def test_profile_of_a_training_step_accounts_for_the_step(monkeypatch):
    monkeypatch.setattr(step_cases, "BATCH", 8)
    monkeypatch.setattr(step_cases, "IMAGE_SIZE", 8)
    result = profile_step("mobilenet-cbam", STEP_BACKEND, steps=1)
    assert {"conv2d_forward", "conv2d_backward", "gated_channel_pool_forward"} <= set(result["kernels"])
    assert set(result["kernels"]) <= set(FAMILY_OF)
    timed = sum(result["phases"].values())
    assert 0 < sum(ms for _, ms in result["kernels"].values()) < timed
    text = format_profile("mobilenet-cbam", STEP_BACKEND, 1, result)
    assert "outside the kernels" in text and "by family:" in text and "conv2d_backward" in text


def test_blas_comparison_prints_a_row_per_layer(capsys):
    import numba

    from minitorch_attn.bench import blas

    previous = numba.get_num_threads()
    try:
        blas.main(batch=2, min_time=0.0)
    finally:
        numba.set_num_threads(previous)
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split()[0] for row in rows] == [f"{c}->{co}" for c, co, _ in blas.LAYERS]
    assert all(float(value) > 0 for row in rows for value in row.split()[2:])
    # the chunked conv it times is the conv (more than one chunk here)
    rng = np.random.default_rng(1)
    x, weight = rng.standard_normal((3, 4, 15, 13)), rng.standard_normal((5, 4, 3, 3))
    wide = blas._chunked_im2col_conv(x, weight)
    assert wide.shape[1] > blas.CHUNK
    # the stacked layout: 16 rows of 14 columns per sample (one zero row and column shared between neighbours)
    stacked = np.zeros((5, 4 * 16 * 14))  # (the positions computed end at a multiple of POSITION_QUANTUM)
    stacked[:, :wide.shape[1]] = wide
    planes = stacked[:, :3 * 16 * 14].reshape(5, 3, 16, 14)
    expected = numpy_backend.conv2d_forward(x, weight, None, (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(planes[:, :, :15, :13].transpose(1, 0, 2, 3), expected, rtol=1e-10, atol=1e-12)


def test_a_server_times_its_jobs_on_request_and_names_its_failure():
    """The real ``serve`` worker: ready with its jobs (a step, a block's passes) and an estimate of each, then
    as many call times as asked, and closed when stdin is. A worker that cannot start (an unknown case) is a
    ChildFailed carrying its error."""
    settings = runner.Settings(min_time=0.05, warmup_time=0.05, child_timeout=300)
    spec = dict(mode="serve", side="torch", threads=1, steps=["mobilenet-cbam"], cases=["bam"], passes=list(PASSES),
                shape=[2, 16, 8, 8], dtype="float32", seed=0, min_time=0.05, min_reps=3, warmup_time=0.05)
    server = runner.start_server(spec, settings)
    try:
        assert server.threads == 1
        assert [(job["case"], job["pass"], job["variant"]) for job in server.jobs] == [
            ("mobilenet-cbam", "train step", "eager"), ("bam", "fwd", "eager"), ("bam", "fwd+bwd", "eager")]
        assert all(job["ms"] > 0 for job in server.jobs)
        for index in (0, 2):
            times = server.time(index, 2)
            assert len(times) == 2 and all(t > 0 for t in times)
    finally:
        server.close()
    assert server.process.returncode == 0
    with pytest.raises(runner.ChildFailed, match="unknown name 'resnet99'"):
        runner.start_server(dict(spec, steps=["resnet99"]), settings)
