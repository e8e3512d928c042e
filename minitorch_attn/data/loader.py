"""Shuffled minibatches with random-shift augmentation, a pure function of (seed, epoch)."""
from __future__ import annotations

import numpy as np

from .dataset import Dataset, check_int


def shift_images(images, offsets):
    """Each image moved by its own integer offset, zero filled: y[n, c, i, j] = x[n, c, i - dy[n], j - dx[n]]
    (0 where that falls outside).

    images (B, C, H, W), offsets (B, 2) ints ``(dy, dx)`` -> (B, C, H, W), same dtype; a positive dy moves the
    content down.
    """
    b, c, h, w = images.shape
    k = int(np.abs(offsets).max(initial=0))
    padded = np.pad(images, ((0, 0), (0, 0), (k, k), (k, k)))
    rows = (k - offsets[:, 0:1] + np.arange(h))[:, None, :, None]
    cols = (k - offsets[:, 1:2] + np.arange(w))[:, None, None, :]
    return padded[np.arange(b)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]


class DataLoader:
    """Minibatches ``(x float32 (B, C, H, W), y int64 (B,))`` of a :class:`Dataset`.

    The order of an epoch (a permutation when ``shuffle``) and each image's shift, uniform in [-shift, shift]
    pixels in y and x independently, are drawn from ``numpy.random.default_rng(SeedSequence([seed, epoch]))``
    before the first batch, so ``batches(epoch)`` gives the same batches however many were read before, and a
    resumed run sees exactly what an uninterrupted one would. ``iter(loader)`` is ``batches(loader.epoch)``
    and then advances ``loader.epoch``.
    """

    def __init__(self, dataset, batch_size=64, shuffle=True, seed=0, shift=0, drop_last=False):
        owner = "DataLoader"
        if not isinstance(dataset, Dataset):
            raise TypeError(f"{owner}: dataset must be a minitorch_attn.data.Dataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = check_int(batch_size, "batch_size", owner, 1)
        self.seed = check_int(seed, "seed", owner, 0)
        self.shift = check_int(shift, "shift", owner, 0)
        height, width = dataset.images.shape[2:]
        if self.shift >= min(height, width):
            raise ValueError(f"{owner}: shift={self.shift} would move whole {height}×{width} images off the canvas; "
                             f"expected shift < {min(height, width)}")
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.epoch = 0

    def __len__(self):
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def batches(self, epoch):
        """The batches of epoch ``epoch`` (an int >= 0); does not touch ``self.epoch``."""
        epoch = check_int(epoch, "epoch", "DataLoader.batches", 0)
        n = len(self.dataset)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        offsets = rng.integers(-self.shift, self.shift + 1, (n, 2)) if self.shift else None
        images, labels = self.dataset.images, self.dataset.labels
        for batch in range(len(self)):
            index = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            x = images[index]
            if offsets is not None:
                x = shift_images(x, offsets[batch * self.batch_size:(batch + 1) * self.batch_size])
            yield np.ascontiguousarray(x, np.float32), labels[index]

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)
