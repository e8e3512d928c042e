"""The in-memory dataset every generator produces, and the argument checks the data layer shares."""
from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def check_int(value, name, owner, minimum):
    """``value`` as an int, or a one-line ValueError naming ``name`` and the bound."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def with_defaults(options, defaults, owner):
    """``defaults`` updated with ``options``; a one-line ValueError names any option the generator lacks."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"{owner}: unknown option(s) {', '.join(unknown)}; expected any of {', '.join(defaults)}")
    return {**defaults, **options}


def check_split(split, owner):
    if split not in SPLITS:
        raise ValueError(f"{owner}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


class Dataset:
    """Images with their class, ground-truth object mask and box, all indexed by example.

    images float32 (N, C, H, W) C-contiguous in [0, 1]; labels int64 (N,) in [0, num_classes);
    masks bool (N, H, W), the pixels of the object that defines the class; boxes int32 (N, 4)
    ``(y0, x0, y1, x1)`` end exclusive, the tight box of the mask; signal_channels bool (N, C), the channels
    in which the object is drawn (all True when every channel carries it); source_ids int64 (N,), the index of
    the real image each example was drawn from (-1 for synthetic objects).
    """

    def __init__(self, images, labels, masks, boxes, signal_channels, source_ids, *, name, split, num_classes):
        owner = f"Dataset({name!r}, {split!r})"
        n = len(images)
        if images.ndim != 4:
            raise ValueError(f"{owner}: images must be (N, C, H, W), got shape {images.shape}")
        expected = {"labels": (n,), "masks": (n,) + images.shape[2:], "boxes": (n, 4),
                    "signal_channels": images.shape[:2], "source_ids": (n,)}
        for key, array in (("labels", labels), ("masks", masks), ("boxes", boxes),
                           ("signal_channels", signal_channels), ("source_ids", source_ids)):
            if array.shape != expected[key]:
                raise ValueError(f"{owner}: {key} must have shape {expected[key]}, got {array.shape}")
        num_classes = check_int(num_classes, "num_classes", owner, 1)
        if n and (labels.min() < 0 or labels.max() >= num_classes):
            bad = labels[(labels < 0) | (labels >= num_classes)]
            raise ValueError(f"{owner}: labels must lie in [0, {num_classes}), found {bad[0]} "
                             f"({len(bad)} out of range)")
        self.images = np.ascontiguousarray(images, np.float32)
        self.labels = np.asarray(labels, np.int64)
        self.masks = np.asarray(masks, bool)
        self.boxes = np.asarray(boxes, np.int32)
        self.signal_channels = np.asarray(signal_channels, bool)
        self.source_ids = np.asarray(source_ids, np.int64)
        self.name, self.split, self.num_classes = name, split, num_classes

    @property
    def in_channels(self):
        return self.images.shape[1]

    def __len__(self):
        return len(self.images)

    def __repr__(self):
        return (f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"image shape {self.images.shape[1:]}, {self.num_classes} classes)")

    def subset(self, n):
        """The first ``n`` examples (the same ones every time), as a Dataset of the same kind (views, not copies)."""
        n = check_int(n, "n", f"{self!r}.subset", 0)
        if n > len(self):
            raise ValueError(f"{self!r}.subset: n={n} is more than the {len(self)} examples there are")
        return type(self)(self.images[:n], self.labels[:n], self.masks[:n], self.boxes[:n], self.signal_channels[:n],
                          self.source_ids[:n], name=self.name, split=self.split, num_classes=self.num_classes)
