"""The course's datasets: generated offline from a seed, cached with checksums, served in shuffled minibatches.

Contract (the training loop and the experiment runner code against exactly this)::

    from minitorch_attn import data
    data.DATASETS                                # ("cluttered-digits", "signal-in-noise")
    ds = data.load(name, split="train", seed=0)  # split in ("train", "val", "test"); cached under data/cache/
    ds.images    # float32 (N, C, H, W), C-contiguous, in [0, 1]
    ds.labels    # int64 (N,)
    ds.masks     # bool (N, H, W): the pixels of the object that defines the class
    ds.boxes     # int32 (N, 4): (y0, x0, y1, x1), end exclusive, the mask's tight box
    ds.num_classes, ds.in_channels, ds.name, ds.split, len(ds)
    ds.subset(n)                                 # the first n examples, same type
    loader = data.DataLoader(ds, batch_size=64, shuffle=True, seed=0, shift=0, drop_last=False)
    len(loader); loader.batches(epoch); iter(loader)

Beyond the contract: ``ds.signal_channels`` bool (N, C) (which channels show the object) and ``ds.source_ids``
int64 (N,) (which real image an example came from, -1 if synthetic); ``data.generate`` (a split or a slice of
it, computed without the cache); generator options as keywords of ``load``/``generate``.

The generators (``cluttered.py``, ``signal_noise.py``) describe what an image contains; ``cache.py`` how the
cache is laid out and checked; ``python -m minitorch_attn.data show NAME`` draws examples.
"""
from .cache import DATASETS, generate, load
from .dataset import SPLITS, Dataset
from .loader import DataLoader, shift_images

__all__ = ["DATASETS", "SPLITS", "Dataset", "DataLoader", "load", "generate", "shift_images"]
