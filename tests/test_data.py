"""The data layer: generators, the checksummed cache, the loader, the show command (all offline, seconds)."""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from minitorch_attn import data
from minitorch_attn.data import cache, cluttered, shift_images, signal_noise, sources
from minitorch_attn.data.show import main as show_main

ROOT = Path(__file__).resolve().parents[1]
# signal-in-noise at a tenth of its size keeps the tests fast; cluttered-digits is tested at its defaults.
SMALL_SIN = {"train_size": 600, "val_size": 100, "test_size": 200}
OPTIONS = {"cluttered-digits": {}, "signal-in-noise": SMALL_SIN}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data-cache")


def load(name, split="train", cache_dir=None, **extra):
    return data.load(name, split, 0, cache_dir=cache_dir, **{**OPTIONS[name], **extra})


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# The committed source digits
# --------------------------------------------------------------------------
def test_committed_digits_match_the_sha256_in_their_readme_and_the_loader():
    readme = (ROOT / "data" / "uci-digits" / "README.md").read_text()
    stated = re.search(r"sha256 of `digits\.npz`: `([0-9a-f]{64})`", readme).group(1)
    assert sha256(sources.DIGITS_PATH) == stated == sources.DIGITS_SHA256
    images, labels = sources.uci_digits()
    assert images.dtype == np.uint8 and images.shape == (1797, 8, 8) and images.max() == 16
    assert labels.dtype == np.int64 and np.array_equal(np.bincount(labels) >= 174, np.ones(10, bool))


def test_a_changed_source_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "digits.npz"
    raw = bytearray(sources.DIGITS_PATH.read_bytes())
    raw[-100] ^= 1
    copy.write_bytes(bytes(raw))
    monkeypatch.setattr(sources, "DIGITS_PATH", copy)
    sources.uci_digits.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"has sha256 .* expected d2cfd555"):
            sources.uci_digits()
    finally:
        sources.uci_digits.cache_clear()


# --------------------------------------------------------------------------
# Generators: determinism, contents, splits
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", data.DATASETS)
def test_generation_is_a_function_of_the_seed(name):
    first = data.generate(name, "val", 3, stop=40, **OPTIONS[name])
    again = data.generate(name, "val", 3, stop=40, **OPTIONS[name])
    other = data.generate(name, "val", 4, stop=40, **OPTIONS[name])
    for key in cache.ARRAYS:
        assert first[key].tobytes() == again[key].tobytes(), key
    assert first["images"].tobytes() != other["images"].tobytes()


@pytest.mark.parametrize("name", data.DATASETS)
def test_a_regenerated_slice_equals_the_cached_bytes(name, cache_dir):
    ds = load(name, cache_dir=cache_dir)
    start, stop = cache.CHUNK - 7, cache.CHUNK + 5  # straddles a chunk boundary
    fresh = data.generate(name, "train", 0, start=start, stop=stop, **OPTIONS[name])
    for key in cache.ARRAYS:
        assert fresh[key].tobytes() == getattr(ds, key)[start:stop].tobytes(), key


@pytest.mark.parametrize("name", data.DATASETS)
def test_manifest_records_version_seed_shapes_and_the_sha256_of_every_file(name, cache_dir):
    ds = load(name, "test", cache_dir=cache_dir)
    folder = cache.cache_folder(name, 0, cache.GENERATORS[name].check_options(OPTIONS[name]),
                                cache_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["generator_version"] == cache.GENERATORS[name].VERSION and manifest["seed"] == 0
    assert len(manifest["files"]) == len(data.SPLITS) * len(cache.ARRAYS)
    for filename, entry in manifest["files"].items():
        assert sha256(folder / filename) == entry["sha256"], filename
    assert manifest["files"]["test-images.npy"]["shape"] == list(ds.images.shape)


@pytest.mark.parametrize("name", data.DATASETS)
def test_contents_images_labels_masks_and_boxes(name, cache_dir):
    ds = load(name, cache_dir=cache_dir)
    n, h, w = len(ds), 32, 32
    assert ds.images.dtype == np.float32 and ds.images.flags.c_contiguous
    assert ds.images.shape == (n, ds.in_channels, h, w) and 0 <= ds.images.min() and ds.images.max() <= 1
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (n,)
    assert set(np.unique(ds.labels)) == set(range(ds.num_classes))
    assert ds.masks.dtype == bool and ds.masks.shape == (n, h, w) and ds.masks.any(axis=(1, 2)).all()
    assert ds.boxes.dtype == np.int32 and ds.boxes.shape == (n, 4)
    y0, x0, y1, x1 = ds.boxes.T
    assert (0 <= y0).all() and (y0 < y1).all() and (y1 <= h).all() and (0 <= x0).all() and (x0 < x1).all()
    assert (x1 <= w).all()
    rows, cols = np.arange(h), np.arange(w)
    inside = (((rows >= y0[:, None]) & (rows < y1[:, None]))[:, :, None]
              & ((cols >= x0[:, None]) & (cols < x1[:, None]))[:, None, :])
    assert not (ds.masks & ~inside).any(), "mask pixels outside the box"
    # Tight: the mask touches all four sides of its box.
    idx = np.arange(n)
    assert ds.masks[idx, y0].any(1).all() and ds.masks[idx, y1 - 1].any(1).all()
    assert ds.masks[idx, :, x0].any(1).all() and ds.masks[idx, :, x1 - 1].any(1).all()
    # The object is drawn where its mask is, in the channels said to carry it.
    shown = ds.images.transpose(0, 2, 3, 1)[ds.masks]  # (mask pixels, C)
    owner = np.repeat(ds.signal_channels, ds.masks.sum(axis=(1, 2)), axis=0)
    assert shown[owner].mean() > 0.5


def test_cluttered_digits_defaults_sizes_and_labels_of_their_sources(cache_dir):
    sizes = {split: len(load("cluttered-digits", split, cache_dir)) for split in data.SPLITS}
    assert sizes == {"train": 4 * 1258, "val": 4 * 180, "test": 4 * 359}
    ds = load("cluttered-digits", cache_dir=cache_dir)
    assert ds.in_channels == 1 and ds.signal_channels.all() and ds.num_classes == 10
    assert np.array_equal(ds.labels, sources.uci_digits()[1][ds.source_ids])
    # The digit's ink is the upscaled source itself (clutter only adds, by max).
    big = cluttered.upscaled_digits(16)[ds.source_ids[:50]]
    for n in range(50):
        assert (ds.images[n, 0][ds.masks[n]] >= cluttered.INK).all()
        assert ds.masks[n].sum() == (big[n] >= cluttered.INK).sum()


def test_splits_share_no_source_digit(cache_dir):
    used = {split: load("cluttered-digits", split, cache_dir).source_ids for split in data.SPLITS}
    for split, ids in used.items():
        assert np.array_equal(np.bincount(ids, minlength=1797)[np.unique(ids)], np.full(len(np.unique(ids)), 4))
    train, val, test = (set(used[s].tolist()) for s in data.SPLITS)
    assert not train & val and not train & test and not val & test
    assert len(train | val | test) == 1797
    # Clutter too comes from the example's own split: the generator draws it from split_sources only.
    assert set(cluttered.split_sources(0)["test"].tolist()) == test


def test_signal_in_noise_noise_channels_carry_nothing(cache_dir):
    ds = load("signal-in-noise", cache_dir=cache_dir)
    assert ds.in_channels == 4 and (ds.signal_channels.sum(axis=1) == 2).all()
    noise = ds.images[~ds.signal_channels]  # (N * 2, H, W)
    signal = ds.images[ds.signal_channels]
    assert abs(noise.mean() - 0.5) < 0.01 and signal.mean() < 0.15
    # Which channels carry the object varies from image to image.
    assert len({tuple(row) for row in ds.signal_channels.tolist()}) == 6


def test_canvas_size_is_an_option():
    big = data.generate("cluttered-digits", "val", 0, stop=8, canvas=48, digit_size=14)
    assert big["images"].shape == (8, 1, 48, 48) and big["masks"].shape == (8, 48, 48)
    assert (big["boxes"][:, 2:] <= 48).all() and (big["boxes"][:, 2] - big["boxes"][:, 0] <= 14).all()


# --------------------------------------------------------------------------
# The cache: corruption, staleness, bad input
# --------------------------------------------------------------------------
def test_a_corrupted_cache_file_is_detected_and_rebuilt(tmp_path, capsys):
    good = load("signal-in-noise", cache_dir=tmp_path)
    capsys.readouterr()
    path = cache.cache_folder("signal-in-noise", 0, signal_noise.check_options(SMALL_SIN), tmp_path) / \
        "train-images.npy"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    again = load("signal-in-noise", cache_dir=tmp_path)
    err = capsys.readouterr().err
    assert "rebuilding the signal-in-noise seed 0 cache" in err and "train-images.npy has sha256" in err
    assert again.images.tobytes() == good.images.tobytes()
    load("signal-in-noise", cache_dir=tmp_path)
    assert "rebuilding" not in capsys.readouterr().err


def test_a_cache_from_another_generator_version_is_rebuilt(tmp_path, capsys):
    load("signal-in-noise", "val", cache_dir=tmp_path)
    manifest_path = cache.cache_folder("signal-in-noise", 0, signal_noise.check_options(SMALL_SIN), tmp_path) / \
        "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["generator_version"] = 0
    manifest_path.write_text(json.dumps(manifest))
    capsys.readouterr()
    load("signal-in-noise", "val", cache_dir=tmp_path)
    expected = f"made by signal-in-noise generator version 0, this is version {signal_noise.VERSION}"
    assert expected in capsys.readouterr().err
    assert json.loads(manifest_path.read_text())["generator_version"] == signal_noise.VERSION


@pytest.mark.parametrize("call, message", [
    (lambda: data.load("mnist"), r"unknown dataset 'mnist'; expected one of cluttered-digits, signal-in-noise"),
    (lambda: data.load("cluttered-digits", "dev"), r"unknown split 'dev'; expected one of train, val, test"),
    (lambda: data.load("cluttered-digits", seed=-1), r"seed must be an int >= 0, got -1"),
    (lambda: data.load("cluttered-digits", seed=1.5), r"seed must be an int >= 0, got 1.5"),
    (lambda: data.load("cluttered-digits", canvas_size=64), r"unknown option\(s\) canvas_size"),
    (lambda: data.generate("cluttered-digits", canvas=12), r"digit_size=16 must not exceed canvas=12"),
    (lambda: data.generate("signal-in-noise", noise_std=-0.1), r"noise_std must be a finite number >= 0"),
    (lambda: data.generate("signal-in-noise", "val", stop=10**6), r"stop <= 1000 \(the val size\)"),
])
def test_bad_arguments_are_one_line_errors_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_labels_out_of_range_are_refused():
    arrays = data.generate("signal-in-noise", "val", stop=4, **SMALL_SIN)
    arrays["labels"][2] = 10
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), found 10 \(1 out of range\)"):
        data.Dataset(*(arrays[key] for key in cache.ARRAYS), name="x", split="val", num_classes=10)


# --------------------------------------------------------------------------
# Dataset.subset and the loader
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(cache_dir):
    return load("cluttered-digits", "val", cache_dir).subset(100)


def test_subset_is_the_first_n_examples(cache_dir, small):
    full = load("cluttered-digits", "val", cache_dir)
    assert isinstance(small, data.Dataset) and len(small) == 100 and small.split == "val"
    assert np.array_equal(small.images, full.images[:100]) and np.array_equal(small.boxes, full.boxes[:100])
    with pytest.raises(ValueError, match="n=721 is more than the 720 examples"):
        full.subset(721)


def test_loader_length_shapes_and_dtypes(small):
    assert len(data.DataLoader(small, batch_size=32)) == 4
    assert len(data.DataLoader(small, batch_size=32, drop_last=True)) == 3
    assert len(data.DataLoader(small, batch_size=25, drop_last=True)) == 4
    batches = list(data.DataLoader(small, batch_size=32, shift=2).batches(0))
    assert [len(y) for _, y in batches] == [32, 32, 32, 4]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape == (len(y), 1, 32, 32) and x.flags.c_contiguous
        assert y.dtype == np.int64
    seen = np.concatenate([y for _, y in data.DataLoader(small, batch_size=32).batches(0)])
    assert np.array_equal(np.sort(seen), np.sort(small.labels))


def test_loader_order_is_a_function_of_seed_and_epoch(small):
    def epoch(seed, number, **kw):
        return [(x.tobytes(), y.tobytes()) for x, y in
                data.DataLoader(small, batch_size=16, seed=seed, **kw).batches(number)]
    assert epoch(0, 0, shift=3) == epoch(0, 0, shift=3)
    assert epoch(0, 0) != epoch(0, 1) and epoch(0, 0) != epoch(1, 0)
    assert epoch(0, 0, shuffle=False) == epoch(0, 1, shuffle=False)
    loader = data.DataLoader(small, batch_size=16, seed=5, shift=1)
    first, second = [[x.tobytes() for x, _ in loader] for _ in range(2)]
    assert loader.epoch == 2
    assert first == [x.tobytes() for x, _ in loader.batches(0)]
    assert second == [x.tobytes() for x, _ in loader.batches(1)]
    # Resuming mid-epoch: a fresh loader's epoch 1 equals the first's, from any batch on.
    assert list(data.DataLoader(small, batch_size=16, seed=5, shift=1).batches(1))[3][0].tobytes() == second[3]


def test_shift_images_moves_content_and_fills_with_zeros():
    x = np.arange(2 * 3 * 5 * 6, dtype=np.float32).reshape(2, 3, 5, 6) + 1
    out = shift_images(x, np.array([[1, -2], [0, 0]]))
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.array_equal(out[0, :, 1:, :4], x[0, :, :4, 2:])
    assert (out[0, :, 0] == 0).all() and (out[0, :, :, 4:] == 0).all()
    assert np.array_equal(out[1], x[1])


def test_loader_shift_moves_each_image_within_its_range(small):
    k = 2
    x, y = next(data.DataLoader(small, batch_size=32, shuffle=False, shift=k).batches(0))
    original = small.images[:32]
    assert not np.array_equal(x, original)
    offsets = [(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)]
    moved = 0
    for n in range(32):
        matches = [o for o in offsets if np.array_equal(x[n], shift_images(original[n:n + 1], np.array([o]))[0])]
        assert matches, f"image {n} is not a shift of its original by at most {k}"
        moved += matches[0] != (0, 0)
    assert moved >= 24


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
    (dict(seed=-3), "seed must be an int >= 0, got -3"),
    (dict(shift=-1), "shift must be an int >= 0, got -1"),
    (dict(shift=32), "shift=32 would move whole 32×32 images off the canvas"),
])
def test_loader_bad_arguments(small, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.DataLoader(small, **kwargs)


# --------------------------------------------------------------------------
# python -m minitorch_attn.data show
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", data.DATASETS)
def test_show_writes_a_png_and_prints_its_path(name, cache_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINITORCH_ATTN_DATA_CACHE", str(cache_dir))
    out = tmp_path / "grid.png"
    assert show_main(["show", name, "--split", "val", "--count", "4", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_show_rejects_bad_arguments(capsys):
    for argv, message in ((["show", "mnist"], "invalid choice: 'mnist'"),
                          (["show", "cluttered-digits", "--split", "dev"], "invalid choice: 'dev'"),
                          (["show", "cluttered-digits", "--seed", "-1"], "--seed must be >= 0, got -1")):
        with pytest.raises(SystemExit):
            show_main(argv)
        assert message in capsys.readouterr().err
