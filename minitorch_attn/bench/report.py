"""The results document as a terminal table, as Markdown for the README, and the README update."""
from __future__ import annotations

import glob
import json
import os

START_MARKER = "<!-- bench:start -->"
END_MARKER = "<!-- bench:end -->"


def _groups(document):
    """{(shape, dtype): {(case, pass): {backend: entry}}} in the order the entries were measured."""
    groups = {}
    for entry in document["entries"]:
        if entry["kind"] == "step":
            continue
        group = groups.setdefault((tuple(entry["shape"]), entry["dtype"]), {})
        group.setdefault((entry["name"], entry["pass"]), {})[entry["backend"]] = entry
    return groups


def _backends(document):
    """Our backends in the order they were measured (PyTorch is the reference column)."""
    seen = []
    for entry in document["entries"]:
        if entry["backend"] != "torch" and entry["backend"] not in seen:
            seen.append(entry["backend"])
    return seen


def _bandwidth_note(document, shape, dtype):
    rows = [b for b in document["bandwidth"] if tuple(b["shape"]) == shape and b["dtype"] == dtype]
    if not rows:
        return "not measured"
    return ", ".join(f"{b['side']} {b['gb_per_s']:.1f}" for b in rows) + " GB/s (the floor uses the highest)"


def _number(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def _ms(value):
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _each_round(entry):
    """Each round's ratio to PyTorch, space-separated (the one ratio when there was one round)."""
    return " ".join(_number(r) for r in entry.get("round_ratios", [entry["ratio_vs_torch"]]))


def _ratio_with_rounds(entry):
    """The ratio, followed by each round's when the entry was timed in several (the blocks)."""
    ratio = _number(entry["ratio_vs_torch"])
    return f"{ratio} ({_each_round(entry)})" if "round_ratios" in entry else ratio


def _rows(document):
    """Header and rows (lists of strings, the case's kind last) per (shape, dtype) group."""
    backends = _backends(document)
    header = ["case", "pass", "floor ms", "torch ms"]
    for backend in backends:
        header += [f"{backend} ms", "× torch", "÷ floor"]
    for (shape, dtype), group in _groups(document).items():
        rows = []
        for (case, pass_name), by_backend in group.items():
            torch_entry = by_backend.get("torch")
            floor = next(iter(by_backend.values()))["floor_ms"]  # the same for every backend
            torch_ms = "–" if torch_entry is None else \
                f"{_ms(torch_entry['median_ms'])} ({torch_entry['torch_variant']})"
            row = [case, pass_name, _ms(floor), torch_ms]
            for backend in backends:
                entry = by_backend.get(backend)
                if entry is None:
                    row += ["–", "–", "–"]
                else:
                    row += [_ms(entry["median_ms"]), _ratio_with_rounds(entry), _number(entry["time_over_floor"], 1)]
            rows.append(row + [next(iter(by_backend.values()))["kind"]])
        yield shape, dtype, header, rows


def _step_rows(document):
    """Header and rows of the training-step table: per (case, threads), PyTorch then each backend."""
    backends = _backends(document)
    steps = {}
    for entry in document["entries"]:
        if entry["kind"] == "step":
            steps.setdefault((entry["name"], entry["threads"]), {})[entry["backend"]] = entry
    header = ["training step", "threads", "torch ms", "torch img/s"]
    for backend in backends:
        header += [f"{backend} ms", f"{backend} img/s", "× torch", "× torch, each round"]
    rows = []
    for (case, threads), by_backend in steps.items():
        torch_entry = by_backend.get("torch")
        row = [case, str(threads)] + (["–", "–"] if torch_entry is None else
                                      [_ms(torch_entry["median_ms"]), f"{torch_entry['img_per_s']:.0f}"])
        for backend in backends:
            entry = by_backend.get(backend)
            row += ["–", "–", "–", "–"] if entry is None else \
                [_ms(entry["median_ms"]), f"{entry['img_per_s']:.0f}", _number(entry["ratio_vs_torch"]),
                 _each_round(entry)]
        rows.append(row)
    return header, rows


def _step_title(document):
    from .step_cases import describe

    cases = sorted({e["name"] for e in document["entries"] if e["kind"] == "step"})
    rounds = document["settings"].get("step_rounds", 1)
    return ("Training steps (forward, cross-entropy, backward, SGD), float32, train mode: " + "; ".join(
        f"{case} = {describe(case)}" for case in cases)
        + f". PyTorch and ours timed in turn, {rounds} round{'s' if rounds != 1 else ''} (a process per side "
          "that stays up, a second or so of steps per turn); ms: the median of the rounds' medians; × torch: the "
          "median of the rounds' ratios")


def _title(document, shape, dtype):
    threads = document["settings"]["threads"]
    rounds = document["settings"].get("block_rounds", 1)
    rounds_note = "" if rounds == 1 else (f"; blocks timed in {rounds} rounds, PyTorch and ours in turn (a process "
                                          f"per side that stays up, about {document['settings']['min_time_s']:g} s "
                                          f"per turn): ms is the median of the rounds', × torch the median of the "
                                          f"rounds' ratios (each in brackets)")
    return (f"(N,C,H,W) = {shape}, {dtype}, {threads} thread{'s' if threads != 1 else ''}; "
            f"copy bandwidth {_bandwidth_note(document, shape, dtype)}{rounds_note}")


def _machine_line(document):
    machine, versions = document["machine"], document["versions"]
    used = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads used; {used}; "
            f"{document['date']}")


def _goal_lines(document):
    for goal in document.get("goals", []):
        mark = "met" if goal["met"] else "MISSED"
        threads = goal.get("threads")
        where = f"{tuple(goal['shape'])}" + ("" if threads is None else f", {threads} thread{'s' * (threads != 1)}")
        yield f"{mark:6s} {goal['goal']} at {where}: {goal['quantity']} = {goal['value']:.2f} (target {goal['target']})"


def text_table(document):
    """The terminal report: one aligned table per (shape, dtype), the goals, any check failures."""
    lines = [_machine_line(document),
             "× torch = PyTorch ms / ours (> 1: faster than PyTorch); ÷ floor = time / memory-traffic floor",
             "torch ms names the fastest PyTorch formulation of the max pools (amax or index)", ""]
    for shape, dtype, header, rows in _rows(document):
        rows = [row[:-1] for row in rows]
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        lines.append(_title(document, shape, dtype))
        for row in [header] + rows:
            lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths))))
        lines.append("")
    header, rows = _step_rows(document)
    if rows:
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        lines.append(_step_title(document))
        for row in [header] + rows:
            lines.append("  ".join(cell.ljust(w) if i < 1 else cell.rjust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths))))
        lines.append("")
    lines += list(_goal_lines(document))
    lines += [f"FAILED: {message}" for message in document["failures"]]
    return "\n".join(lines)


def _markdown_table(header, rows):
    return ["| " + " | ".join(header) + " |",
            "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"] + \
        ["| " + " | ".join(row) + " |" for row in rows]


def markdown(document):
    """The README section: the machine, then per (shape, dtype) the blocks' table with the ops' table
    folded below it, then the goals."""
    lines = [f"Measured on {_machine_line(document)} with `{document['command']}`.",
             "× torch: PyTorch time / ours (> 1 is faster than PyTorch eager on the same threads); "
             "÷ floor: time over the memory-traffic floor (bytes the pass must move / measured copy bandwidth).",
             ""]
    for shape, dtype, header, rows in _rows(document):
        blocks = [row[:-1] for row in rows if row[-1] == "block"]
        ops = [row[:-1] for row in rows if row[-1] == "op"]
        lines += [f"**{_title(document, shape, dtype)}**", ""]
        if blocks:
            lines += _markdown_table(header, blocks) + [""]
        if ops:
            lines += ["<details><summary>the ops at this shape</summary>", ""] + _markdown_table(header, ops) \
                + ["", "</details>", ""]
    header, rows = _step_rows(document)
    if rows:
        lines += [f"**{_step_title(document)}**", ""] + _markdown_table(header, rows) + [""]
    goals = list(_goal_lines(document))
    if goals:
        lines += ["Goals (float32):", ""] + [f"- {line}" for line in goals] + [""]
    return "\n".join(lines).rstrip() + "\n"


def latest_results(folder="bench-results"):
    """The most recent full (not ``--quick``) results file in ``folder``, by the date it records."""
    documents = []
    for path in glob.glob(os.path.join(folder, "*.json")):
        with open(path) as f:
            document = json.load(f)
        if not document.get("settings", {}).get("quick"):
            documents.append((document["date"], path))
    if not documents:
        raise FileNotFoundError(f"no full benchmark results in {folder}/ (run `make bench` first)")
    return max(documents)[1]


def update_readme(readme_path, section):
    """Replace the text between the bench markers of ``readme_path`` with ``section``."""
    with open(readme_path) as f:
        text = f.read()
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"{readme_path}: expected the markers {START_MARKER} and {END_MARKER} (in that order) "
                         f"around the benchmark section")
    updated = text[:start + len(START_MARKER)] + "\n" + section + text[end:]
    with open(readme_path, "w") as f:
        f.write(updated)
