"""Rebuild digits.npz from the digits.csv.gz that a scikit-learn wheel ships (run once; nothing imports this).

    .venv/bin/pip download scikit-learn==1.9.1 --no-deps -d /tmp/skl
    .venv/bin/python data/uci-digits/make_digits_npz.py /tmp/skl/scikit_learn-1.9.1-*.whl

The archive is written with fixed member dates and no compression, so the same CSV always gives the same
bytes (``numpy.savez`` stamps the current time into the zip, which would change the sha256 on every run).
"""
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "sklearn/datasets/data/digits.csv.gz"


def npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def main(wheel):
    with zipfile.ZipFile(wheel) as archive:
        packed = archive.read(MEMBER)
    table = np.loadtxt(io.StringIO(gzip.decompress(packed).decode("ascii")), delimiter=",", dtype=np.int64)
    images = table[:, :64].reshape(-1, 8, 8).astype(np.uint8)
    labels = table[:, 64].astype(np.int64)
    assert images.shape == (1797, 8, 8) and images.max() == 16 and set(labels.tolist()) == set(range(10))
    out = Path(__file__).with_name("digits.npz")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in (("images", images), ("labels", labels)):
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), npy_bytes(array))
    print(f"{MEMBER} sha256 {hashlib.sha256(packed).hexdigest()}")
    print(f"{out} sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main(sys.argv[1])
