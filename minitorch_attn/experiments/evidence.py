"""Reading the ablation results as evidence: which of the papers' claims our seeds can test, and with what result.

:mod:`.report` compares every row of a table with one reference row. The papers' claims are often about two
other rows (CBAM's avg & max pooling against SE's avg pooling), and each paper gap is between two single numbers (no spread over runs is reported).
The questions lessons 11, 12 and 15 ask of the committed results:

* :func:`compare`: one claim, "``better`` has a lower error than ``worse``": the paper's gap, ours with
  Welch's test, and the report's verdict words;
* :func:`claims_table`: several such claims as a Markdown table;
* :func:`agreement`: every row of some tables against its reference: how many gaps point the paper's way, and
  how many are above the noise;
* :func:`summary`: that count in sentences;
* :func:`seed_noise`: the seed-to-seed standard deviation, pooled over every distinct configuration;
* :func:`critical_t`, :func:`detectable_gap`, :func:`seeds_needed`: the smallest gap Welch's test calls above
  the noise with n seeds per row, and how many seeds a gap of a given size would need;
* :func:`interval`: our gap between two rows with its 95 % confidence interval;
* :func:`gap_figure`: the paper's gap beside ours, row by row, in one picture.
"""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np

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
    when both rows have two seeds or more, our ``gap``, Welch's ``t``, ``df``, ``p``, the ``half_width`` of the
    gap's 95 % interval (:func:`interval`) and the ``verdict``."""
    experiment = tables.get(name)
    experiment.variant(better), experiment.variant(worse)  # a one-line error naming the known variants
    by_name = rows(name, results)
    a, b = by_name[better], by_name[worse]
    claim = {"experiment": name, "better": a["label"], "worse": b["label"], "seeds": (a["seeds"], b["seeds"]),
             "paper_gap": None if a["paper"] is None or b["paper"] is None else a["paper"] - b["paper"]}
    if a["seeds"] > 1 and b["seeds"] > 1:
        t, df, p = report.welch_t_test(a["errors"], b["errors"])
        claim.update(gap=a["mean"] - b["mean"], t=t, df=df, p=p,
                     half_width=interval(a["errors"], b["errors"])[1])
        claim["verdict"] = report.verdict(claim)
    else:
        claim["verdict"] = "not enough seeds yet"
    return claim


def claims_table(name, pairs, results=None):
    """``(markdown, claims)``: a table of :func:`compare` for each ``(better, worse)`` pair of experiment ``name``
    (the paper's gap, ours with its 95 % interval, p, the verdict) and a closing line counting the claims
    confirmed, contradicted and left within the noise."""
    claims = [compare(name, better, worse, results) for better, worse in pairs]
    lines = ["| claim | paper Δ | ours Δ (95 % interval) | p | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        paper = "–" if c["paper_gap"] is None else f"{c['paper_gap']:+.2f}"
        if "p" in c:
            ours = (f"{c['gap']:+.2f} ({c['gap'] - c['half_width']:+.2f} to {c['gap'] + c['half_width']:+.2f})")
            p = f"{c['p']:.3f}"
        else:
            ours, p = f"– (seeds: {c['seeds'][0]} and {c['seeds'][1]})", "–"
        lines.append(f"| {c['better']} beats {c['worse']} | {paper} | {ours} | {p} | {c['verdict']} |")
    tested = [c for c in claims if "p" in c]
    confirmed = sum(c["p"] < LEVEL and c["gap"] < 0 for c in tested)
    contradicted = sum(c["p"] < LEVEL and c["gap"] > 0 for c in tested)
    lines += ["", f"{len(tested)} of {len(claims)} claims testable: {confirmed} confirmed above the noise, "
                  f"{contradicted} contradicted above the noise, {len(tested) - confirmed - contradicted} within "
                  "the noise."]
    return "\n".join(lines), claims


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


def summary(names, results=None):
    """The answer to "does the paper's ranking hold here?" for experiments ``names``, in sentences computed from
    :func:`agreement` and :func:`seed_noise` (never from numbers typed in)."""
    found = agreement(names, results)
    tested, same, above = found["tested"], found["same_direction"], found["above_noise"]
    if not tested:
        return "No row has two seeds on both sides yet: there is nothing to compare."
    std, _ = seed_noise(names, results)
    text = (f"Of {tested} rows, {same} move the way the paper's did and {tested - same} the other way (the rows of "
            f"one table share its reference row, so they are not independent votes); {above} "
            f"{'is' if above == 1 else 'are'} above the noise "
            f"({found['above_noise_same']} the paper's way, {found['above_noise_opposite']} against it).")
    if above == 0:
        return text + (f" None of the gaps is larger than the seed-to-seed noise ({std:.2f} points): at this scale "
                       "these tables neither confirm nor contradict the paper's ranking; it is not visible.")
    if found["above_noise_opposite"] == 0:
        return text + " The rows above the noise agree with the paper; the others cannot be told from noise."
    return text + " Some rows above the noise go against the paper: for those, its ranking does not hold here."


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


def interval(better_errors, worse_errors, level=LEVEL):
    r"""``(gap, half_width)``: mean(better) − mean(worse) and the half-width of its two-sided confidence interval
    at ``1 − level``, :math:`t_{crit}(\nu)\sqrt{s_a^2/n_a + s_b^2/n_b}` with Welch's ν (0 when neither row has
    any spread)."""
    a, b = np.asarray(better_errors, float), np.asarray(worse_errors, float)
    _, df, _ = report.welch_t_test(a, b)
    spread = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float(a.mean() - b.mean()), (critical_t(df, level) * spread if spread else 0.0)


def gap_figure(names, results=None, path=None):
    """A forest plot of every tested row of experiments ``names`` (see :func:`agreement`): on the left the
    paper's gap to the table's reference row (one number per row), on the right ours with its 95 % interval. Green: the
    same direction as the paper, red: the opposite; a filled dot is above the noise, an open one within it.
    Writes a PNG and returns its path."""
    from matplotlib.figure import Figure  # no pyplot: the lesson's own plotting backend stays as it is

    found = agreement(names, results)["rows"]
    figure = Figure(figsize=(10.5, 0.32 * max(len(found), 3) + 1.6))
    paper_axis, our_axis = figure.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": (1, 1.4)})
    references = {name: rows(name, results)[tables.get(name).reference]["errors"] for name in names}
    for y, row in enumerate(found):
        gap, half = interval(row["errors"], references[row["experiment"]])
        colour = "tab:green" if (row["gap"] < 0) == (row["paper_gap"] < 0) and row["gap"] != 0 else "tab:red"
        paper_axis.barh(y, row["paper_gap"], color="tab:gray", alpha=0.6)
        our_axis.errorbar(gap, y, xerr=half, fmt="o", color=colour, capsize=3,
                          markerfacecolor=colour if row["p"] < LEVEL else "white")
    labels = [f"{tables.get(r['experiment']).source.split(' (')[0]}: {r['label']}" for r in found]
    paper_axis.set_yticks(range(len(found)), labels, fontsize=8)
    paper_axis.invert_yaxis()
    for axis in (paper_axis, our_axis):
        axis.axvline(0, color="k", linewidth=0.8)
        axis.grid(axis="x", alpha=0.3)
    paper_axis.set_xlabel("paper: error − reference row's (points)", fontsize=9)
    our_axis.set_xlabel("ours: error − reference row's (points, 95 % interval)", fontsize=9)
    paper_axis.set_title("paper (one number per row, no spread)", fontsize=10)
    our_axis.set_title("ours (mean over seeds, 95 % interval)\ngreen: paper's direction · red: opposite · "
                       "filled: above noise", fontsize=9)
    if not found:
        our_axis.text(0.5, 0.5, "no row with two seeds on both sides yet", ha="center", transform=our_axis.transAxes)
    figure.tight_layout()
    path = pathlib.Path(path) if path is not None else _results(results) / "gap-figure.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
