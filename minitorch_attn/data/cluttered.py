"""cluttered-digits: one real handwritten digit at a random place on a larger canvas, among fragments of others.

The classic testbed for spatial attention (cluttered MNIST, Mnih et al. 2014), built from the 1,797 UCI optical
digits committed under ``data/uci-digits`` so that nothing is downloaded. Per image:

1. the split's next source digit (8×8, values 0..16) is upscaled bilinearly to ``digit_size``² and scaled to
   [0, 1], then placed at a uniform random position on a ``canvas``² black image;
2. ``clutter_min``..``clutter_max`` fragments, each a random square of side ``patch_min``..``patch_max`` cut from
   another digit of the *same split* (the most inked of 4 candidate cuts, so fragments are strokes, not
   background), are pasted at uniform random positions; they may overlap the digit, as in cluttered MNIST;
3. overlapping ink is combined with ``max``, so values stay in [0, 1].

label: the digit's class. mask: the digit's own ink (upscaled value >= 0.25) at its position. box: the tight
box of that mask.

Splits are by source image: a fixed permutation of the 1,797 sources (from the seed) gives 1,258 to train, 180
to val and 359 to test, so no handwritten digit, not even as clutter, is seen in two splits. Each source is
placed ``repeats`` times per split (different positions and clutter each time), in source order repeated:
the first ``len(split sources)`` examples of a split show every source once.
"""
from __future__ import annotations

import functools

import numpy as np

from .dataset import check_int, with_defaults
from .render import paste_max, tight_boxes, upscale
from .sources import uci_digits

NAME = "cluttered-digits"
VERSION = 1
TAG = 1  # keeps this generator's random streams apart from the other generators' for the same seed
NUM_CLASSES = 10
DEFAULTS = {"canvas": 32, "digit_size": 16, "repeats": 4,
            "clutter_min": 4, "clutter_max": 8, "patch_min": 5, "patch_max": 7}
SOURCE_COUNTS = {"train": 1258, "val": 180, "test": 359}  # 70 / 10 / 20 % of 1,797
INK = 0.25
CANDIDATE_CUTS = 4


def check_options(options):
    """The full option set (defaults filled in), or a one-line ValueError naming the bad option."""
    owner = NAME
    opts = with_defaults(options, DEFAULTS, owner)
    for key in DEFAULTS:
        opts[key] = check_int(opts[key], key, owner, 0 if key == "clutter_min" else 1)
    for low, high in (("clutter_min", "clutter_max"), ("patch_min", "patch_max"),
                      ("patch_max", "digit_size"), ("digit_size", "canvas")):
        if opts[low] > opts[high]:
            raise ValueError(f"{owner}: {low}={opts[low]} must not exceed {high}={opts[high]}")
    return opts


def split_size(split, opts):
    return SOURCE_COUNTS[split] * opts["repeats"]


@functools.lru_cache(maxsize=4)
def split_sources(seed):
    """{split: indices into the 1,797 sources}, disjoint, from one permutation drawn from ``seed``."""
    order = np.random.default_rng(np.random.SeedSequence([seed, TAG])).permutation(len(uci_digits()[1]))
    n_train, n_val = SOURCE_COUNTS["train"], SOURCE_COUNTS["val"]
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


@functools.lru_cache(maxsize=2)
def upscaled_digits(size):
    """All 1,797 sources as float32 (1797, size, size) in [0, 1]."""
    return upscale(uci_digits()[0] / 16.0, size)


def make_chunk(rng, seed, split, first, count, opts):
    """Examples ``first .. first+count-1`` of the split, drawn from ``rng`` (one generator per chunk)."""
    size, canvas, widest = opts["digit_size"], opts["canvas"], opts["patch_max"]
    sources = split_sources(seed)[split]
    digits = upscaled_digits(size)
    own = (first + np.arange(count)) % len(sources)
    source = sources[own]

    y0 = rng.integers(0, canvas - size + 1, count)
    x0 = rng.integers(0, canvas - size + 1, count)
    # Room on the bottom/right for a fragment window (patch_max wide) whose fragment ends at the edge.
    image = np.zeros((count, canvas + widest, canvas + widest), np.float32)
    paste_max(image, digits[source], y0, x0)
    masks = np.zeros((count, canvas, canvas), bool)
    paste_max(masks, digits[source] >= INK, y0, x0)

    n_clutter = rng.integers(opts["clutter_min"], opts["clutter_max"] + 1, count)
    span = np.arange(widest)
    for slot in range(opts["clutter_max"]):
        pick = rng.integers(0, len(sources) - 1, count)
        other = sources[pick + (pick >= own)]  # any source of the split but the example's own
        side = rng.integers(opts["patch_min"], opts["patch_max"] + 1, count)
        cut_y = rng.integers(0, size - side + 1, (CANDIDATE_CUTS, count))
        cut_x = rng.integers(0, size - side + 1, (CANDIDATE_CUTS, count))
        rows = np.minimum(cut_y[..., None] + span, size - 1)[..., :, None]
        cols = np.minimum(cut_x[..., None] + span, size - 1)[..., None, :]
        inside = span < side[:, None]
        cuts = digits[other[None, :, None, None], rows, cols] * (inside[:, :, None] & inside[:, None, :])
        inked = (cuts >= INK).sum(axis=(2, 3))
        fragment = cuts[inked.argmax(axis=0), np.arange(count)] * (slot < n_clutter)[:, None, None]
        paste_max(image, fragment, rng.integers(0, canvas - side + 1), rng.integers(0, canvas - side + 1))

    return {"images": np.ascontiguousarray(image[:, None, :canvas, :canvas]),
            "labels": uci_digits()[1][source].astype(np.int64),
            "masks": masks,
            "boxes": tight_boxes(masks),
            "signal_channels": np.ones((count, 1), bool),
            "source_ids": source.astype(np.int64)}
