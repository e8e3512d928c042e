"""Tables and figures from the result files: ours (mean ± std over seeds) beside the paper's, and whether each
gap is larger than the seed-to-seed noise.

"Larger than the noise" is Welch's t-test of a row's test errors against the reference row's (unequal
variances, two-sided, 5 %): with three seeds only a gap of several standard deviations passes, which is the
point — the papers report single runs.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np

from ..exercise import exercise
from . import runner, tables


def student_t_sf(t, df):
    r"""P(|T| > t) for Student's t with ``df`` degrees of freedom, by integrating its density

    .. math:: p(x) = \frac{\Gamma(\frac{\nu+1}{2})}{\sqrt{\nu\pi}\,\Gamma(\frac{\nu}{2})}
              \left(1 + \frac{x^2}{\nu}\right)^{-\frac{\nu+1}{2}}

    over [0, |t|] with Simpson's rule (accurate to ~1e-9 here; no SciPy needed).
    """
    t = abs(float(t))
    if math.isinf(t):
        return 0.0
    points = 4001
    x = np.linspace(0.0, t, points)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
    step = t / (points - 1)
    half_mass = step / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    return float(max(0.0, 1.0 - 2.0 * half_mass))


@exercise("11.1", "Welch's t-test of mean(a) - mean(b): the statistic t, the Welch-Satterthwaite degrees of "
                  "freedom and the two-sided p-value from student_t_sf (lesson 11)")
def welch_t_test(a, b):
    r"""Welch's t-test of mean(a) − mean(b): :math:`t = (\bar a - \bar b)/\sqrt{s_a^2/n_a + s_b^2/n_b}`, with the
    Welch–Satterthwaite degrees of freedom
    :math:`\nu = (s_a^2/n_a + s_b^2/n_b)^2 / \big(\frac{(s_a^2/n_a)^2}{n_a - 1} + \frac{(s_b^2/n_b)^2}{n_b - 1}\big)`
    (:math:`s^2`: the sample variance, divided by n − 1). Returns ``(t, df, p)`` with the two-sided
    :math:`p = P(|T_\nu| > |t|)` (:func:`student_t_sf`); needs two values per side. Both sides without spread:
    t = ±inf and p = 0 if the means differ, t = 0 and p = 1 if not."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch_t_test needs at least two values per side, got {len(a)} and {len(b)}")
    # BEGIN SOLUTION
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    gap = a.mean() - b.mean()
    if va + vb == 0:
        return (math.copysign(math.inf, gap) if gap else 0.0), math.inf, (0.0 if gap else 1.0)
    t = gap / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t, df, student_t_sf(t, df)
    # END SOLUTION


def collect(experiment, results):
    """``{variant name: [finished result dicts, by seed]}`` for the variants that have any."""
    folder = pathlib.Path(results) / experiment.name
    found = {}
    for variant in experiment.variants:
        runs = sorted((r for r in (runner.load_result(p) for p in folder.glob(f"{variant.name}-seed*.json"))
                       if r is not None and r.get("status") == "finished"), key=lambda r: r["seed"])
        if runs:
            found[variant.name] = runs
    return found


def summarise(experiment, results):
    """One row per variant: our test error mean/std over seeds, its gap to the reference row with Welch's
    test, the paper's error and gap, params and MACs, and (Grad-CAM table) the localisation scores."""
    found = collect(experiment, results)
    reference = [r["test_error"] for r in found.get(experiment.reference, [])]
    paper_reference = experiment.variant(experiment.reference).paper_error
    rows = []
    for variant in experiment.variants:
        runs = found.get(variant.name, [])
        errors = np.array([r["test_error"] for r in runs])
        row = {"variant": variant.name, "label": variant.label, "seeds": len(runs),
               "errors": errors.tolist(), "mean": float(errors.mean()) if len(runs) else None,
               "std": float(errors.std(ddof=1)) if len(runs) > 1 else None,
               "paper": variant.paper_error,
               "paper_gap": (None if variant.paper_error is None or paper_reference is None
                             else variant.paper_error - paper_reference),
               "params": runs[0]["params"] if runs else None, "macs": runs[0]["macs"] if runs else None,
               "minutes": sum(r["wall_seconds"] for r in runs) / 60 if runs else None}
        if variant.name != experiment.reference and len(runs) > 1 and len(reference) > 1:
            t, df, p = welch_t_test(errors, reference)
            row.update(gap=float(errors.mean() - np.mean(reference)), t=t, df=df, p=p)
        if experiment.localisation and runs:
            for metric in ("energy_in_box", "pointing_game"):
                values = np.array([r["localisation"][metric] for r in runs])
                row[metric] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None)
        rows.append(row)
    return rows


def _pm(mean, std, digits=2):
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def verdict(row):
    """Plain words for a row's gap: above or within the noise, and whether it points the paper's way."""
    if "p" not in row:
        return ""
    noise = "above the noise" if row["p"] < 0.05 else "within the noise"
    if row["paper_gap"] is None or row["paper_gap"] == 0 or row["gap"] == 0:
        return noise
    same = (row["gap"] < 0) == (row["paper_gap"] < 0)
    return f"{noise}; {'same direction as' if same else 'opposite to'} the paper"


def format_report(name, results=None):
    """The Markdown table of experiment ``name`` (test error %, lower is better) and a line on coverage."""
    experiment = tables.get(name)
    results = runner.RESULTS if results is None else results
    rows = summarise(experiment, results)
    lines = [f"### {experiment.title}", "",
             f"Paper: {experiment.source}. Ours: test error % on {runner.FULL.dataset}, mean ± std over seeds; "
             f"Δ against '{experiment.variant(experiment.reference).label}'; p: Welch's t-test.", ""]
    header = "| row | paper err | paper Δ | ours err | ours Δ | p | verdict | params | MMACs |"
    if experiment.localisation:
        header += " energy in box | pointing game |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        cells = [row["label"], "–" if row["paper"] is None else f"{row['paper']:.2f}",
                 "–" if row["paper_gap"] is None else f"{row['paper_gap']:+.2f}",
                 _pm(row["mean"], row["std"]) + (f" (n={row['seeds']})" if row["seeds"] else ""),
                 f"{row['gap']:+.2f}" if "gap" in row else "–", f"{row['p']:.3f}" if "p" in row else "–",
                 verdict(row), "–" if row["params"] is None else f"{row['params']:,}",
                 "–" if row["macs"] is None else f"{row['macs'] / 1e6:.2f}"]
        if experiment.localisation:
            cells += [_pm(*row.get("energy_in_box", (None, None)), digits=3),
                      _pm(*row.get("pointing_game", (None, None)), digits=3)]
        lines.append("| " + " | ".join(cells) + " |")
    missing = [row["label"] for row in rows if not row["seeds"]]
    if missing:
        lines += ["", f"No results yet for: {', '.join(missing)} (run `python -m minitorch_attn.experiments run "
                      f"{name}`)."]
    if experiment.notes:
        lines += ["", experiment.notes]
    return "\n".join(lines)


def figure(name, results=None, path=None):
    """Bar chart: the paper's error per row beside ours (mean, ± std error bars, one dot per seed)."""
    from matplotlib.figure import Figure  # not pyplot: saving a file must not switch a notebook's backend

    experiment = tables.get(name)
    results = runner.RESULTS if results is None else pathlib.Path(results)
    rows = summarise(experiment, results)
    positions = np.arange(len(rows))
    has_paper = any(row["paper"] is not None for row in rows)
    fig = Figure(figsize=(11 if has_paper else 6, 0.5 * len(rows) + 1.6))
    axes = fig.subplots(1, 2 if has_paper else 1, squeeze=False)
    ours = axes[0, -1]
    means = [row["mean"] if row["mean"] is not None else np.nan for row in rows]
    stds = [row["std"] or 0 for row in rows]
    ours.barh(positions, means, xerr=stds, color="tab:blue", alpha=0.6, capsize=3)
    for y, row in zip(positions, rows):
        ours.plot(row["errors"], [y] * len(row["errors"]), "k.", markersize=5)
    finite = [m for m in means if not np.isnan(m)]
    if finite:
        low, high = min(finite) - 2 * max(stds + [0.1]), max(finite) + 2 * max(stds + [0.1])
        ours.set_xlim(max(0, low), high)
    ours.set_title("ours: test error % (mean ± std, dots = seeds)", fontsize=10)
    if has_paper:
        paper = axes[0, 0]
        values = [row["paper"] if row["paper"] is not None else np.nan for row in rows]
        paper.barh(positions, values, color="tab:gray", alpha=0.6)
        known = [v for v in values if not np.isnan(v)]
        paper.set_xlim(min(known) - 0.5, max(known) + 0.3)
        paper.set_title(f"paper: top-1 error % ({experiment.source.split(' (')[0]})", fontsize=10)
    for axis in axes[0]:
        axis.set_yticks(positions, [row["label"] for row in rows])
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
    if has_paper:
        axes[0, -1].set_yticklabels([])
    fig.suptitle(experiment.title, fontsize=11)
    fig.tight_layout()
    path = pathlib.Path(path) if path is not None else results / experiment.name / "figure.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
