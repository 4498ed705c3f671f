import gzip
import struct

import numpy as np
import pytest
import torch

from minprune import data


def test_embedded_split_sizes_and_balance():
    splits = data.load("mnist-small")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3500, 500, 1000)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    for part, per_class in ((splits.test, 100), (splits.val, 50)):
        counts = torch.bincount(part.tensors[1], minlength=10)
        assert counts.tolist() == [per_class] * 10  # stratified


def test_splits_are_disjoint_and_cover_the_data():
    splits = data.load("mnist-small")
    images, _ = data.read_mnist_small()
    mean, std = data.NORMALISATION["mnist"]
    pixels = {}
    for name in ("train", "val", "test"):
        x = getattr(splits, name).tensors[0]
        raw = torch.round((x * std[0] + mean[0]) * 255).to(torch.uint8).flatten(1)
        pixels[name] = {bytes(r.numpy()) for r in raw}
    assert not pixels["train"] & pixels["test"] and not pixels["val"] & pixels["test"]
    assert sum(map(len, pixels.values())) == len({bytes(i.tobytes()) for i in images})


def test_split_is_seeded():
    a, b = data.load("mnist-small", seed=3), data.load("mnist-small", seed=3)
    assert torch.equal(a.train.tensors[1], b.train.tensors[1])
    c = data.load("mnist-small", seed=4)
    assert torch.equal(a.test.tensors[1], c.test.tensors[1])  # the test set never moves
    assert not torch.equal(a.val.tensors[1], c.val.tensors[1])


def test_normalised_and_loader_shapes():
    splits = data.load("mnist-small")
    x = splits.train.tensors[0]
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.15
    xb, yb = next(iter(splits.loader("train", 32)))
    assert xb.shape == (32, 1, 28, 28) and yb.dtype == torch.long


def test_train_loader_shuffles_reproducibly():
    splits = data.load("mnist-small")
    first = [next(iter(splits.loader("train", 16, seed=1)))[1] for _ in range(2)]
    other = next(iter(splits.loader("train", 16, seed=2)))[1]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], other)


def test_stratified_split_proportions():
    labels = np.repeat([0, 1, 2], [100, 200, 300])
    keep, hold = data.stratified_split(labels, 60, seed=0)
    assert len(hold) == 60 and len(keep) == 540 and not set(keep) & set(hold)
    assert np.bincount(labels[hold]).tolist() == [10, 20, 30]


@pytest.mark.parametrize("bad", [dict(name="imagenet"), dict(name="mnist-small", val_size=-1),
                                 dict(name="mnist-small", val_size=4500)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        data.load(**bad)


def test_bad_loader_arguments():
    splits = data.load("mnist-small")
    with pytest.raises(ValueError, match="split"):
        splits.loader("training")
    with pytest.raises(ValueError, match="batch_size"):
        splits.loader("train", 0)


def test_tampered_data_file_is_refused(tmp_path):
    images, labels = data.read_mnist_small()
    labels = labels.copy()
    labels[0] = (labels[0] + 1) % 10
    path = tmp_path / "mnist_small.npz"
    np.savez_compressed(path, images=images, labels=labels)
    with pytest.raises(ValueError, match="hash check"):
        data.read_mnist_small(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        data.read_mnist_small(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        data.read_mnist_small(tmp_path / "missing.npz")


def test_torchvision_offline_gives_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load("mnist", root=tmp_path)


def _write_idx(path, array, magic):
    with gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_path_on_tiny_files(tmp_path, name, folder):
    """torchvision reads the uncompressed *-ubyte files; write tiny ones and load them like the real thing."""
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 2049)
    splits = data.load(name, root=tmp_path, val_size=10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 20)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    x, y = next(iter(splits.loader("val", 10)))
    assert x.shape == (10, 1, 28, 28) and sorted(y.tolist()) == list(range(10))
