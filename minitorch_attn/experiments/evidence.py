"""Reading the ablation results as evidence: which of the papers' claims our seeds can test, and with what result.

:mod:`.report` compares every row of a table with one reference row. The papers' claims are often about two
other rows (CBAM's avg & max pooling against SE's avg pooling), and each paper gap comes from a single run.
The questions lessons 11, 12 and 15 ask of the committed results:

* :func:`compare`: one claim, "``better`` has a lower error than ``worse``": the paper's gap, ours with
  Welch's test, and the report's verdict words;
* :func:`agreement`: every row of some tables against its reference: how many gaps point the paper's way, and
  how many are above the noise;
* :func:`seed_noise`: the seed-to-seed standard deviation, pooled over every distinct configuration;
* :func:`critical_t`, :func:`detectable_gap`, :func:`seeds_needed`: the smallest gap Welch's test calls above
  the noise with n seeds per row, and how many seeds a gap of a given size would need;
* :func:`gap_figure`: the paper's gap against ours, row by row, in one picture.
"""
from __future__ import annotations

import json
import math
import pathlib

from . import report, runner, tables

LEVEL = 0.05  # the report's test level (two-sided)


def _results(results):
    return runner.RESULTS if results is None else pathlib.Path(results)


def rows(name, results=None):
    """``{variant name: row}`` of :func:`report.summarise` for experiment ``name``."""
    return {row["variant"]: row for row in report.summarise(tables.get(name), _results(results))}


def compare(name, better, worse, results=None):
    """The claim "``better`` has a lower error than ``worse``" in experiment ``name``: a dict with both labels,
    the paper's gap (better − worse, negative when the paper agrees with the claim), the seeds per row, and,
    when both rows have two seeds or more, our ``gap``, Welch's ``t``, ``df``, ``p`` and the ``verdict``."""
    experiment = tables.get(name)
    experiment.variant(better), experiment.variant(worse)  # a one-line error naming the known variants
    by_name = rows(name, results)
    a, b = by_name[better], by_name[worse]
    claim = {"experiment": name, "better": a["label"], "worse": b["label"], "seeds": (a["seeds"], b["seeds"]),
             "paper_gap": None if a["paper"] is None or b["paper"] is None else a["paper"] - b["paper"]}
    if a["seeds"] > 1 and b["seeds"] > 1:
        t, df, p = report.welch_t_test(a["errors"], b["errors"])
        claim.update(gap=a["mean"] - b["mean"], t=t, df=df, p=p)
        claim["verdict"] = report.verdict(claim)
    else:
        claim["verdict"] = "not enough seeds yet"
    return claim


def agreement(names, results=None):
    """Every non-reference row of experiments ``names`` with a paper number and two seeds or more on both
    sides: ``{"rows": [...], "tested", "same_direction", "above_noise", "above_noise_same", "above_noise_opposite"}``
    (a row's gap and the paper's are both against the table's reference row)."""
    tested = []
    for name in names:
        experiment = tables.get(name)
        for row in rows(name, results).values():
            if row["variant"] != experiment.reference and "p" in row and row["paper_gap"] is not None:
                tested.append(dict(row, experiment=name))
    same = [r for r in tested if (r["gap"] < 0) == (r["paper_gap"] < 0) and r["gap"] != 0]
    above = [r for r in tested if r["p"] < LEVEL]
    return {"rows": tested, "tested": len(tested), "same_direction": len(same), "above_noise": len(above),
            "above_noise_same": sum(r in same for r in above),
            "above_noise_opposite": sum(r not in same for r in above)}


def seed_noise(names, results=None):
    """``(std, dof)``: the seed-to-seed standard deviation of the test error pooled over every distinct
    configuration of experiments ``names`` with two seeds or more, :math:`\\sqrt{\\sum (n_i - 1) s_i^2 /
    \\sum (n_i - 1)}`, and its degrees of freedom. A run shared by two tables counts once. ``(None, 0)``
    when no configuration has two seeds yet."""
    by_config = {}
    for name in names:
        for runs in report.collect(tables.get(name), _results(results)).values():
            for run in runs:
                by_config.setdefault(json.dumps(run["config"], sort_keys=True), {})[run["seed"]] = run["test_error"]
    squares, dof = 0.0, 0
    for errors in by_config.values():
        if len(errors) > 1:
            values = list(errors.values())
            mean = sum(values) / len(values)
            squares += sum((v - mean) ** 2 for v in values)
            dof += len(values) - 1
    return (math.sqrt(squares / dof) if dof else None), dof


def critical_t(df, level=LEVEL):
    """The t with :math:`P(|T_{df}| > t) = level` (two-sided), by bisection on :func:`report.student_t_sf`."""
    if not df > 0 or not 0 < level < 1:
        raise ValueError(f"critical_t needs df > 0 and 0 < level < 1, got df={df!r}, level={level!r}")
    low, high = 0.0, 1.0
    while report.student_t_sf(high, df) > level:
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if report.student_t_sf(middle, df) > level else (low, middle)
    return (low + high) / 2


def detectable_gap(std, seeds, level=LEVEL):
    """The smallest gap between two rows of ``seeds`` runs each, both with seed spread ``std``, that Welch's
    test calls above the noise: :math:`t_{crit}(2(n-1)) \\cdot std \\cdot \\sqrt{2/n}` (with equal spreads
    Welch's degrees of freedom are 2(n − 1))."""
    if not isinstance(seeds, int) or seeds < 2:
        raise ValueError(f"detectable_gap needs seeds >= 2 per row, got {seeds!r}")
    return critical_t(2 * (seeds - 1), level) * std * math.sqrt(2 / seeds)


def seeds_needed(gap, std, level=LEVEL):
    """The fewest seeds per row with which a true ``gap`` of this size would reach :func:`detectable_gap`."""
    if not gap > 0 or not std > 0:
        raise ValueError(f"seeds_needed needs gap > 0 and std > 0, got gap={gap!r}, std={std!r}")
    high = 2
    while detectable_gap(std, high, level) > gap:
        high *= 2
    low = max(2, high // 2)
    while low < high:  # detectable_gap falls as seeds grow
        middle = (low + high) // 2
        low, high = (middle + 1, high) if detectable_gap(std, middle, level) > gap else (low, middle)
    return high


def gap_figure(names, results=None, path=None):
    """One point per row of experiments ``names``: the paper's gap to the table's reference row (x) against
    ours (y, with its 95 % confidence interval). Points in the lower-left and upper-right quarters point the
    paper's way; a bar that crosses y = 0 is within the noise. Writes a PNG and returns its path."""
    from matplotlib.figure import Figure  # no pyplot: the lesson's own plotting backend stays as it is

    found = agreement(names, results)["rows"]
    figure = Figure(figsize=(7.5, 4.8))
    axis = figure.add_subplot()
    for index, name in enumerate(names):
        mine = [r for r in found if r["experiment"] == name]
        if not mine:
            continue
        half_widths = [abs(r["gap"] / r["t"]) * critical_t(r["df"]) if r["t"] and math.isfinite(r["t"]) else 0
                       for r in mine]
        axis.errorbar([r["paper_gap"] for r in mine], [r["gap"] for r in mine], yerr=half_widths, fmt="o",
                      capsize=3, color=f"C{index}", label=tables.get(name).title.split(":")[0])
        for r in mine:
            axis.annotate(r["label"], (r["paper_gap"], r["gap"]), fontsize=7, xytext=(4, 3),
                          textcoords="offset points")
    axis.axhline(0, color="k", linewidth=0.8)
    axis.axvline(0, color="k", linewidth=0.8)
    axis.set_xlabel("paper: error − reference row's error (points, one run)")
    axis.set_ylabel("ours: error − reference row's (points,\nmean over seeds, 95 % interval)")
    axis.set_title("Does each row move the way the paper's did?", fontsize=10)
    if found:
        axis.legend(fontsize=8, loc="best")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path = pathlib.Path(path) if path is not None else _results(results) / "gap-figure.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
