"""``python -m minitorch_attn.data show NAME [--split S] [--seed N] [--count K] [--out FILE.png]``.

Saves a grid of examples with their ground-truth boxes drawn and prints the PNG's path. For signal-in-noise
each example gets two panels: one channel that carries the object and one that is pure noise.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from .cache import DATASETS, cache_root, load
from .dataset import SPLITS


def panels(ds, count):
    """(image (H, W), title, box or None) for each panel to draw."""
    out = []
    for n in range(count):
        label, box = int(ds.labels[n]), ds.boxes[n]
        if ds.signal_channels[n].all():
            out.append((ds.images[n, 0], f"#{n} label {label}", box))
            continue
        signal = int(np.flatnonzero(ds.signal_channels[n])[0])
        noise = int(np.flatnonzero(~ds.signal_channels[n])[0])
        out.append((ds.images[n, signal], f"#{n} label {label} ch{signal}", box))
        out.append((ds.images[n, noise], f"#{n} noise ch{noise}", None))
    return out


def save_grid(ds, count, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    drawn = panels(ds, count)
    columns = min(len(drawn), 8)
    rows = math.ceil(len(drawn) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, title, box) in zip(axes.flat, drawn):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        if box is not None:
            y0, x0, y1, x1 = (int(v) for v in box)
            # Pixel i covers [i - 0.5, i + 0.5] in imshow's coordinates.
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="red", lw=1))
    fig.suptitle(f"{ds.name} ({ds.split}): ground-truth boxes in red", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minitorch_attn.data",
                                     description="Look at the course's datasets.")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="save a grid of examples with their ground-truth boxes")
    show.add_argument("name", choices=DATASETS)
    show.add_argument("--split", choices=SPLITS, default="train")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--count", type=int, default=16)
    show.add_argument("--out", type=Path, default=None,
                      help="PNG to write (default: <cache>/show/NAME-SPLIT-seedN.png)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    ds = load(args.name, args.split, args.seed)
    if not 1 <= args.count <= len(ds):
        parser.error(f"--count must be in 1..{len(ds)} (the {args.split} size), got {args.count}")
    out = args.out or cache_root() / "show" / f"{args.name}-{args.split}-seed{args.seed}.png"
    save_grid(ds, args.count, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
