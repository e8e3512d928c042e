"""experiments.evidence: claims between two rows, agreement with the paper, pooled seed noise, detectable gaps."""
import math

import numpy as np
import pytest

from minitorch_attn.experiments import evidence, report, runner, tables


def write_results(folder, name, errors_by_variant):
    """Result files as the runner writes them (only the fields the report reads), one per seed."""
    experiment = tables.get(name)
    for variant, errors in errors_by_variant.items():
        config = runner.run_config(experiment.variant(variant), runner.FULL)
        for seed, error in enumerate(errors, start=1):
            runner.write_json_atomic(runner.result_path(folder, name, variant, seed), {
                "status": "finished", "seed": seed, "test_error": error, "config": config, "params": 1000,
                "macs": 10_000, "wall_seconds": 60.0})


# Printed two-sided 5 % critical values of Student's t.
@pytest.mark.parametrize("df, t", [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (1e6, 1.960)])
def test_critical_t_matches_printed_tables(df, t):
    assert evidence.critical_t(df) == pytest.approx(t, abs=1e-3)
    assert report.student_t_sf(evidence.critical_t(df), df) == pytest.approx(0.05, abs=1e-9)


def test_detectable_gap_is_where_welch_says_above_the_noise():
    # Two rows of three seeds with the same spread: a gap a little above the detectable one passes, below fails.
    spread = np.array([-1.0, 0.0, 1.0])
    gap = evidence.detectable_gap(1.0, 3)
    assert gap == pytest.approx(2.776 * math.sqrt(2 / 3), abs=1e-3)
    assert report.welch_t_test(spread + 1.01 * gap, spread)[2] < 0.05 < report.welch_t_test(spread + 0.99 * gap,
                                                                                            spread)[2]


def test_interval_excludes_zero_exactly_when_welch_says_above_the_noise():
    spread = np.array([-1.0, 0.5, 0.5])
    for shift in (0.5, 2.0, 2.4, 3.0, -2.5):
        gap, half = evidence.interval(spread + shift, spread * 2)
        assert gap == pytest.approx(shift)
        assert (abs(gap) > half) == (report.welch_t_test(spread + shift, spread * 2)[2] < 0.05)
    assert evidence.interval([20.0, 20.0], [21.0, 21.0]) == (-1.0, 0.0)


def test_seeds_needed_is_the_first_count_that_resolves_the_gap():
    n = evidence.seeds_needed(0.3, 2.0)
    assert evidence.detectable_gap(2.0, n) <= 0.3 < evidence.detectable_gap(2.0, n - 1)
    assert evidence.seeds_needed(100.0, 1.0) == 2
    with pytest.raises(ValueError, match="gap > 0"):
        evidence.seeds_needed(0.0, 1.0)
    with pytest.raises(ValueError, match="seeds >= 2"):
        evidence.detectable_gap(1.0, 1)


def test_compare_agreement_and_noise_from_result_files(tmp_path):
    write_results(tmp_path, "cbam-pooling", {"none": [30.0, 31.0, 29.0], "avg": [20.0, 21.0, 19.0],
                                             "max": [32.0, 33.5, 31.0], "avg-max": [25.0]})
    claim = evidence.compare("cbam-pooling", "avg", "max", tmp_path)
    assert claim["paper_gap"] == pytest.approx(23.14 - 23.20)
    assert claim["gap"] == pytest.approx(20.0 - 32.1666667) and claim["p"] < 0.05
    assert claim["verdict"] == "above the noise; same direction as the paper"
    assert claim["half_width"] == pytest.approx(evidence.interval([20.0, 21.0, 19.0], [32.0, 33.5, 31.0])[1])
    assert evidence.compare("cbam-pooling", "avg-max", "avg", tmp_path)["verdict"] == "not enough seeds yet"
    with pytest.raises(ValueError, match="has no variant 'mean'"):
        evidence.compare("cbam-pooling", "mean", "avg", tmp_path)

    text, found = evidence.claims_table("cbam-pooling", [("avg", "max"), ("avg-max", "avg")], tmp_path)
    assert [c["verdict"] for c in found] == ["above the noise; same direction as the paper", "not enough seeds yet"]
    assert text.splitlines()[-1] == ("1 of 2 claims testable: 1 confirmed above the noise, 0 contradicted above the "
                                     "noise, 0 within the noise.")

    found = evidence.agreement(["cbam-pooling"], tmp_path)
    # avg: 10 points better than the baseline (paper: better); max: 2.2 worse (paper: better); avg-max: 1 seed.
    assert found["tested"] == 2 and found["same_direction"] == 1
    assert found["above_noise"] == found["above_noise_same"] + found["above_noise_opposite"]

    assert evidence.summary(["cbam-pooling"], tmp_path).startswith("Of 2 rows, 1 move the way the paper's did")
    assert evidence.summary(["bam-branches"], tmp_path).startswith("No row has two seeds")

    # none/avg/max have spreads 1, 1, 1.258...: pooled over 6 degrees of freedom
    std, dof = evidence.seed_noise(["cbam-pooling"], tmp_path)
    assert dof == 6 and std == pytest.approx(math.sqrt((2 + 2 + np.var([32, 33.5, 31], ddof=1) * 2) / 6))


def test_a_run_shared_by_two_tables_counts_once_in_the_noise(tmp_path):
    write_results(tmp_path, "cbam-pooling", {"avg-max": [20.0, 22.0]})
    write_results(tmp_path, "cbam-spatial", {"channel": [20.0, 22.0]})  # the same configuration
    assert evidence.seed_noise(["cbam-pooling", "cbam-spatial"], tmp_path) == (pytest.approx(math.sqrt(2)), 1)
    assert evidence.seed_noise(["bam-branches"], tmp_path) == (None, 0)


def test_gap_figure_writes_a_png_with_and_without_results(tmp_path):
    assert evidence.gap_figure(["bam-branches"], tmp_path, tmp_path / "empty.png").stat().st_size > 0
    write_results(tmp_path, "cbam-pooling", {"none": [30.0, 31.0], "avg": [20.0, 21.5], "max": [30.0, 30.0]})
    path = evidence.gap_figure(["cbam-pooling", "cbam-arrangement"], tmp_path, tmp_path / "gaps.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
