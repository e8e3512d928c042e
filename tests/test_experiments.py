"""The experiment runner and report: statistics, quick runs of every table, resume, sharing, bad input."""
import dataclasses
import json

import numpy as np
import pytest

from minitorch_attn import experiments
from minitorch_attn.experiments import __main__ as cli
from minitorch_attn.experiments import report, runner, tables


# Two-sided critical values of Student's t from printed tables: P(|T| > t) = p.
@pytest.mark.parametrize("t, df, p", [(12.706, 1, 0.05), (2.920, 2, 0.10), (4.604, 4, 0.01), (2.228, 10, 0.05),
                                      (1.960, 1e7, 0.05), (0.0, 3, 1.0)])
def test_student_t_tail_matches_printed_tables(t, df, p):
    assert report.student_t_sf(t, df) == pytest.approx(p, abs=2e-4)


def test_welch_test_on_a_hand_computed_case():
    # means 2 and 5, variances 1 and 1, n = 3 each: t = -3 / sqrt(2/3), df = 4
    t, df, p = report.welch_t_test([1, 2, 3], [4, 5, 6])
    assert t == pytest.approx(-3 / np.sqrt(2 / 3))
    assert df == pytest.approx(4)
    assert 0.01 < p < 0.05
    assert report.welch_t_test([1, 1], [1, 1])[2] == 1.0
    with pytest.raises(ValueError, match="at least two values"):
        report.welch_t_test([1], [1, 2])


def test_every_table_has_its_reference_row_and_paper_numbers():
    for name in tables.EXPERIMENTS:
        experiment = tables.get(name)
        experiment.variant(experiment.reference)
        assert len({v.name for v in experiment.variants}) == len(experiment.variants)
        if name != "gradcam":
            assert all(v.paper_error is not None for v in experiment.variants if v.name != "cbam")


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """Every experiment's quick run, one seed, in this process (the second table on sees shared runs)."""
    folder = tmp_path_factory.mktemp("results")
    logs = []
    for name in tables.EXPERIMENTS:
        assert runner.run(name, seeds=1, quick=True, results=folder, jobs=0, log=logs.append) == 0
    return folder, logs


def test_quick_run_of_every_experiment_writes_one_result_per_variant(quick_results):
    folder, _ = quick_results
    for name in tables.EXPERIMENTS:
        for variant in tables.get(name).variants:
            result = json.loads((folder / name / f"{variant.name}-seed1.json").read_text())
            assert result["status"] == "finished" and result["seed"] == 1
            assert result["config"] == runner.run_config(variant, runner.QUICK)
            assert 0 <= result["test_error"] <= 100 and result["params"] > 0 and result["macs"] > 0
            assert len(result["curves"]) == runner.QUICK.epochs
            assert 0 <= result["localisation"]["energy_in_box"] <= 1
    assert not list(folder.glob("*/.partial/*.npz")), "finished runs leave no checkpoint behind"


def test_identical_runs_are_copied_from_another_table_not_retrained(quick_results):
    folder, logs = quick_results
    copied = json.loads((folder / "cbam-arrangement" / "se-seed1.json").read_text())
    original = json.loads((folder / "cbam-pooling" / "avg-seed1.json").read_text())
    assert copied["copied_from"] == "cbam-pooling/avg-seed1.json"
    assert copied["test_error"] == original["test_error"] and copied["curves"] == original["curves"]
    gradcam_log = next(line for line in logs if line.startswith("gradcam:"))
    assert "4 copied" in gradcam_log and "0 to run" in gradcam_log


def test_rerun_keeps_finished_results_and_redoes_only_what_is_missing(quick_results, tmp_path):
    folder, _ = quick_results
    target = tmp_path / "results"
    (target / "cbam-pooling").mkdir(parents=True)
    for path in (folder / "cbam-pooling").glob("*.json"):
        (target / "cbam-pooling" / path.name).write_text(path.read_text())
    (target / "cbam-pooling" / "max-seed1.json").unlink()
    # an interrupted write leaves only a temporary file: it never counts as a result
    (target / "cbam-pooling" / ".max-seed1.json.abc.tmp").write_text("{")
    kept = {p.name: p.stat().st_mtime_ns for p in (target / "cbam-pooling").glob("*.json")}
    logs = []
    assert runner.run("cbam-pooling", seeds=1, quick=True, results=target, jobs=0, log=logs.append) == 0
    assert "3 finished run(s) kept" in logs[0] and "1 to run" in logs[0]
    assert {p.name: p.stat().st_mtime_ns for p in (target / "cbam-pooling").glob("*.json")
            if p.name in kept} == kept
    redone = json.loads((target / "cbam-pooling" / "max-seed1.json").read_text())
    assert redone["test_error"] == json.loads((folder / "cbam-pooling" / "max-seed1.json").read_text())["test_error"]


def test_a_result_with_another_configuration_is_stale(quick_results, tmp_path):
    folder, _ = quick_results
    (tmp_path / "cbam-pooling").mkdir()
    result = json.loads((folder / "cbam-pooling" / "none-seed1.json").read_text())
    result["config"]["budget"]["epochs"] = 99
    (tmp_path / "cbam-pooling" / "none-seed1.json").write_text(json.dumps(result))
    to_run, done, stale, copies = runner.plan(tables.get("cbam-pooling"), 1, runner.QUICK, tmp_path)
    assert [v.name for v, _ in stale] == ["none"] and not done and not copies and len(to_run) == 4


def test_report_and_figure_from_two_seeds(tmp_path):
    logs = []
    assert runner.run("cbam-arrangement", seeds=2, quick=True, results=tmp_path, jobs=0, log=logs.append) == 0
    text = experiments.format_report("cbam-arrangement", tmp_path)
    for variant in tables.get("cbam-arrangement").variants:
        assert variant.label in text and f"{variant.paper_error:.2f}" in text
    assert text.count("(n=2)") == 4 and ("within the noise" in text or "above the noise" in text)
    rows = experiments.summarise(tables.get("cbam-arrangement"), tmp_path)
    errors = [json.loads((tmp_path / "cbam-arrangement" / f"parallel-seed{s}.json").read_text())["test_error"]
              for s in (1, 2)]
    assert rows[-1]["mean"] == pytest.approx(np.mean(errors))
    png = experiments.figure("cbam-arrangement", tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_numbers_and_another_seed_other_numbers(tmp_path):
    for folder in ("a", "b"):
        runner.run("cbam-pooling", seeds=2, quick=True, results=tmp_path / folder, jobs=0, variants=["avg-max"],
                   log=lambda line: None)
    first, second, other = (json.loads((tmp_path / f / "cbam-pooling" / n).read_text())
                            for f, n in (("a", "avg-max-seed1.json"), ("b", "avg-max-seed1.json"),
                                         ("a", "avg-max-seed2.json")))
    strip = [{k: v for k, v in epoch.items() if k not in ("seconds", "images_per_second")} for epoch in
             first["curves"]]
    assert strip == [{k: v for k, v in epoch.items() if k not in ("seconds", "images_per_second")}
                     for epoch in second["curves"]]
    assert first["test_error"] == second["test_error"]
    assert first["curves"][0]["train_loss"] != other["curves"][0]["train_loss"]


def test_a_diverging_run_writes_no_result_and_is_counted(tmp_path):
    exploding = dataclasses.replace(runner.QUICK, optimizer="sgd", lr=1e30)
    failures = runner.run("cbam-pooling", seeds=1, results=tmp_path, jobs=0, variants=["none"], budget=exploding,
                          log=lambda line: None)
    assert failures == 1
    assert not (tmp_path / "cbam-pooling" / "none-seed1.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["run", "cbam-nothing"], "unknown experiment 'cbam-nothing'"),
    (["run", "cbam-pooling", "--seeds", "0"], "--seeds must be a whole number >= 1"),
    (["run", "cbam-pooling", "--variants", "avg,mean"], "has no variant 'mean'"),
    (["report", "bam-everything"], "unknown experiment"),
])
def test_bad_input_is_one_line_naming_the_problem(argv, message, capsys, tmp_path):
    assert cli.main(argv + ["--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_results_folder_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["run", "cbam-pooling", "--quick", "--results", str(blocker)]) == 2
    assert "not writable" in capsys.readouterr().err


def test_list_names_every_experiment(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in tables.EXPERIMENTS)
