"""signal-in-noise: a small class-defining shape among distractors, drawn in some channels; the rest are noise.

A synthetic set where both of CBAM's gates have something to find:

* spatial: the class is carried by one 7×7 shape (one of 10, :data:`CLASS_SHAPES`) at a uniform random place,
  with ``distractor_min``..``distractor_max`` smaller shapes (:data:`DISTRACTOR_SHAPES`: blobs, bars, corners,
  pieces of the class shapes but never a whole one) scattered around it; distractors keep one pixel clear of
  the object's 7×7 square (4 tries per distractor, dropped if all 4 land on it), so they never change it;
* channel: of ``channels`` input channels, ``signal_channels`` (chosen at random per image) show the object
  and distractors plus Gaussian noise of std ``noise_std``; the others are pure uniform [0, 1) noise.

Every shape has its own brightness, uniform in [0.6, 1], so brightness says nothing about the class.
label: the class shape's index. mask: the object's pixels. box: their tight box.
"""
from __future__ import annotations

import numpy as np

from .dataset import check_int, with_defaults
from .render import paste_max, tight_boxes

NAME = "signal-in-noise"
VERSION = 2  # 2: noise drawn only for the channels that show it (1 drew both kinds for every channel)
TAG = 2
NUM_CLASSES = 10
DEFAULTS = {"canvas": 32, "channels": 4, "signal_channels": 2, "train_size": 5000, "val_size": 1000,
            "test_size": 2000, "distractor_min": 4, "distractor_max": 8, "noise_std": 0.1}
PLACEMENT_TRIES = 4


def parse_shapes(*drawings):
    """ASCII drawings ('#' = ink) -> float32 (K, 7, 7) top-left aligned, and each drawing's (height, width)."""
    shapes = np.zeros((len(drawings), 7, 7), np.float32)
    sizes = np.zeros((len(drawings), 2), np.int64)
    for k, drawing in enumerate(drawings):
        rows = drawing.split()
        sizes[k] = len(rows), len(rows[0])
        shapes[k, :len(rows), :len(rows[0])] = [[c == "#" for c in row] for row in rows]
    return shapes, sizes


CLASS_SHAPES, _ = parse_shapes(
    "...#... ...#... ...#... ####### ...#... ...#... ...#...",  # 0 plus
    "#.....# .#...#. ..#.#.. ...#... ..#.#.. .#...#. #.....#",  # 1 cross
    "####### #.....# #.....# #.....# #.....# #.....# #######",  # 2 square
    "...#... ..#.#.. .#...#. #.....# .#...#. ..#.#.. ...#...",  # 3 diamond
    "...#... ...#... ..###.. ..###.. .#####. .#####. #######",  # 4 triangle
    "#.....# #.....# #.....# ####### #.....# #.....# #.....#",  # 5 H
    "####### ...#... ...#... ...#... ...#... ...#... ...#...",  # 6 T
    "#...... #...... #...... #...... #...... #...... #######",  # 7 L
    "..###.. .#...#. #.....# #.....# #.....# .#...#. ..###..",  # 8 ring
    "####### ....... ####### ....... ####### ....... #######",  # 9 stripes
)
DISTRACTOR_SHAPES, DISTRACTOR_SIZES = parse_shapes(
    "## ##",                      # dot
    "### ### ###",                # block
    "#####",                      # horizontal bar
    "# # # # #",                  # vertical bar
    "#... .#.. ..#. ...#",        # diagonal
    "### #.. #..",                # corner
)
OBJECT = 7


def check_options(options):
    """The full option set (defaults filled in), or a one-line ValueError naming the bad option."""
    owner = NAME
    opts = with_defaults(options, DEFAULTS, owner)
    for key in DEFAULTS:
        if key != "noise_std":
            opts[key] = check_int(opts[key], key, owner, 0 if key == "distractor_min" else 1)
    std = opts["noise_std"]
    if not isinstance(std, (int, float)) or isinstance(std, bool) or not 0 <= std < float("inf"):
        raise ValueError(f"{owner}: noise_std must be a finite number >= 0, got {std!r}")
    opts["noise_std"] = float(std)
    for low, high in (("distractor_min", "distractor_max"), ("signal_channels", "channels")):
        if opts[low] > opts[high]:
            raise ValueError(f"{owner}: {low}={opts[low]} must not exceed {high}={opts[high]}")
    if opts["canvas"] < OBJECT + 2:
        raise ValueError(f"{owner}: canvas must be >= {OBJECT + 2} to hold a {OBJECT}×{OBJECT} object and a "
                         f"distractor, got {opts['canvas']}")
    return opts


def split_size(split, opts):
    return opts[f"{split}_size"]


def make_chunk(rng, seed, split, first, count, opts):
    """``count`` examples drawn from ``rng`` (one generator per chunk; ``seed``, ``split``, ``first`` unused)."""
    canvas, channels = opts["canvas"], opts["channels"]
    index = np.arange(count)
    labels = rng.integers(0, NUM_CLASSES, count)
    y0 = rng.integers(0, canvas - OBJECT + 1, count)
    x0 = rng.integers(0, canvas - OBJECT + 1, count)
    brightness = rng.uniform(0.6, 1.0, count).astype(np.float32)
    # Room on the bottom/right for a 7-wide shape window whose shape ends at the edge.
    scene = np.zeros((count, canvas + OBJECT, canvas + OBJECT), np.float32)
    paste_max(scene, CLASS_SHAPES[labels] * brightness[:, None, None], y0, x0)
    masks = np.zeros((count, canvas, canvas), bool)
    paste_max(masks, CLASS_SHAPES[labels] > 0, y0, x0)

    n_distractors = rng.integers(opts["distractor_min"], opts["distractor_max"] + 1, count)
    for slot in range(opts["distractor_max"]):
        kind = rng.integers(0, len(DISTRACTOR_SHAPES), count)
        height, width = DISTRACTOR_SIZES[kind].T
        ys = rng.integers(0, canvas - height + 1, (PLACEMENT_TRIES, count))
        xs = rng.integers(0, canvas - width + 1, (PLACEMENT_TRIES, count))
        clear = ((ys + height < y0) | (ys > y0 + OBJECT) | (xs + width < x0) | (xs > x0 + OBJECT))
        choice = clear.argmax(axis=0)
        shown = (slot < n_distractors) & clear.any(axis=0)
        value = rng.uniform(0.6, 1.0, count).astype(np.float32) * shown
        paste_max(scene, DISTRACTOR_SHAPES[kind] * value[:, None, None], ys[choice, index], xs[choice, index])

    n_signal = opts["signal_channels"]
    order = np.argsort(rng.random((count, channels)), axis=1)
    shown_in, noise_in = order[:, :n_signal], order[:, n_signal:]
    signal = np.zeros((count, channels), bool)
    signal[index[:, None], shown_in] = True
    images = np.empty((count, channels, canvas, canvas), np.float32)
    images[index[:, None], shown_in] = np.clip(scene[:, None, :canvas, :canvas] + np.float32(opts["noise_std"])
                                               * rng.standard_normal((count, n_signal, canvas, canvas),
                                                                     dtype=np.float32), 0, 1)
    images[index[:, None], noise_in] = rng.random((count, channels - n_signal, canvas, canvas), dtype=np.float32)
    return {"images": images,
            "labels": labels.astype(np.int64),
            "masks": masks,
            "boxes": tight_boxes(masks),
            "signal_channels": signal,
            "source_ids": np.full(count, -1, np.int64)}
