"""Generate a dataset once, keep it on disk with a manifest, and check it on every load.

Layout: ``<cache>/<name>/seed<seed>[-<options hash>]/`` holds one ``.npy`` file per split and array
(``train-images.npy``, ...) and ``manifest.json``: the generator's version, the seed, every option, and the
shape, dtype and sha256 of each file. :func:`load` reads a split's files, hashes their bytes and compares them
with the manifest; a missing, corrupted or stale (older generator version) cache is rebuilt, with one line on
stderr saying why. The default cache is ``data/cache/`` in the repository (git-ignored); the environment
variable ``MINITORCH_ATTN_DATA_CACHE`` or ``load(..., cache_dir=...)`` moves it.

Generation is chunked: example i of a split comes from chunk i // CHUNK, whose random generator is seeded by
(seed, generator tag, split, chunk), so any slice can be regenerated alone and must match the cache byte for
byte (:func:`generate` with ``start``/``stop``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import cluttered, signal_noise
from .dataset import SPLITS, Dataset, check_int, check_split
from .render import chunk_ranges
from .sources import DATA_DIR
from ..files import write_atomic

GENERATORS = {module.NAME: module for module in (cluttered, signal_noise)}
DATASETS = tuple(GENERATORS)
ARRAYS = ("images", "labels", "masks", "boxes", "signal_channels", "source_ids")
CHUNK = 512


def check_name(name, owner):
    if name not in GENERATORS:
        raise ValueError(f"{owner}: unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return GENERATORS[name]


def generate(name, split="train", seed=0, *, start=0, stop=None, **options):
    """Examples ``start .. stop-1`` of a split, computed afresh (no cache): {array name: array}."""
    owner = "data.generate"
    module = check_name(name, owner)
    check_split(split, owner)
    seed = check_int(seed, "seed", owner, 0)
    opts = module.check_options(options)
    size = module.split_size(split, opts)
    stop = size if stop is None else stop
    start, stop = check_int(start, "start", owner, 0), check_int(stop, "stop", owner, 0)
    if not start <= stop <= size:
        raise ValueError(f"{owner}: need 0 <= start <= stop <= {size} (the {split} size), got {start}, {stop}")
    parts = []
    for chunk, lo, hi in chunk_ranges(start, stop, CHUNK):
        first = chunk * CHUNK
        rng = np.random.default_rng(np.random.SeedSequence([seed, module.TAG, SPLITS.index(split), chunk]))
        arrays = module.make_chunk(rng, seed, split, first, min(CHUNK, size - first), opts)
        parts.append({key: arrays[key][lo - first:hi - first] for key in ARRAYS})
    if not parts:
        return {key: value[:0] for key, value in
                module.make_chunk(np.random.default_rng(0), seed, split, 0, 0, opts).items()}
    return {key: np.concatenate([part[key] for part in parts]) for key in ARRAYS}


def cache_root(cache_dir=None):
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("MINITORCH_ATTN_DATA_CACHE", DATA_DIR / "cache"))


def cache_folder(name, seed, opts, cache_dir=None):
    """Where a (dataset, seed, options) lives; default options get the plain ``seed<seed>`` folder."""
    module = GENERATORS[name]
    changed = {key: value for key, value in opts.items() if module.DEFAULTS[key] != value}
    folder = f"seed{seed}"
    if changed:
        folder += "-" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:10]
    return cache_root(cache_dir) / name / folder


def npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def build(name, seed, opts, folder):
    """Generate every split, write the files, then the manifest (last, so a half-written cache is never valid)."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    module = GENERATORS[name]
    files = {}
    for split in SPLITS:
        arrays = generate(name, split, seed, **opts)
        for key in ARRAYS:
            raw = npy_bytes(arrays[key])
            filename = f"{split}-{key}.npy"
            write_atomic(folder / filename, lambda file: file.write(raw))
            files[filename] = {"shape": list(arrays[key].shape), "dtype": str(arrays[key].dtype),
                               "sha256": hashlib.sha256(raw).hexdigest()}
    manifest = {"dataset": name, "generator_version": module.VERSION, "seed": seed, "options": opts,
                "numpy": np.__version__, "files": files}
    text = json.dumps(manifest, indent=1) + "\n"
    write_atomic(folder / "manifest.json", lambda file: file.write(text.encode()))
    print(f"data: generated {name} seed {seed} into {folder} in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    return manifest


def read_split(folder, manifest, split):
    """{array name: array} for one split, or the reason the cache cannot be used (a str)."""
    arrays = {}
    for key in ARRAYS:
        filename = f"{split}-{key}.npy"
        entry = manifest["files"].get(filename)
        path = folder / filename
        if entry is None or not path.is_file():
            return f"{path} is missing"
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != entry["sha256"]:
            return f"{path} has sha256 {digest[:12]}…, the manifest says {entry['sha256'][:12]}…"
        arrays[key] = np.load(io.BytesIO(raw), allow_pickle=False)
    return arrays


def stale_reason(manifest, name, seed, opts):
    module = GENERATORS[name]
    if manifest.get("generator_version") != module.VERSION:
        return (f"it was made by {name} generator version {manifest.get('generator_version')}, "
                f"this is version {module.VERSION}")
    if manifest.get("seed") != seed or manifest.get("options") != opts:
        return "its seed or options differ from the ones asked for"
    return None


def load(name, split="train", seed=0, *, cache_dir=None, **options):
    """One split of a dataset as a :class:`Dataset`, generated into the cache on first use.

    name: one of :data:`DATASETS`; split: ``"train"``, ``"val"`` or ``"test"``; seed: int >= 0;
    options: the generator's own (see ``DEFAULTS`` in ``cluttered.py`` / ``signal_noise.py``).
    """
    owner = "data.load"
    module = check_name(name, owner)
    check_split(split, owner)
    seed = check_int(seed, "seed", owner, 0)
    opts = module.check_options(options)
    folder = cache_folder(name, seed, opts, cache_dir)
    manifest_path = folder / "manifest.json"
    reason = None
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (ValueError, UnicodeDecodeError):
            reason = f"{manifest_path} is not valid JSON"
        else:
            reason = stale_reason(manifest, name, seed, opts)
            if reason is None:
                arrays = read_split(folder, manifest, split)
                if isinstance(arrays, str):
                    reason = arrays
        if reason is not None:
            print(f"data: rebuilding the {name} seed {seed} cache: {reason}", file=sys.stderr)
    if not manifest_path.is_file() or reason is not None:
        manifest = build(name, seed, opts, folder)
        arrays = read_split(folder, manifest, split)
        if isinstance(arrays, str):
            raise RuntimeError(f"{owner}: the cache was rebuilt but still fails its check: {arrays}")
    return Dataset(*(arrays[key] for key in ARRAYS), name=name, split=split, num_classes=module.NUM_CLASSES)
