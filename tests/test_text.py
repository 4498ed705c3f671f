"""The shipped text for notebooks/12_transformers.ipynb: its asset, its positional splits, the character
vocabulary and the next-character loaders (minprune/text.py)."""

import lzma
import math
import sys

import pytest
import torch

import minprune as mp
from minprune import batches, data, text


@pytest.fixture(scope="module")
def splits():
    return data.load("pydoc-text")


SMALL = "The quick brown fox jumps over the lazy dog. " * 4  # 180 characters: 162 / 9 / 9


def test_load_dispatches_to_the_text(splits):
    assert isinstance(splits, text.TextSplits)
    assert isinstance(mp.load("pydoc-text"), text.TextSplits)
    assert "pydoc-text" in data.KNOWN_NAMES and "pydoc-text" not in data.NAMES  # images stay what NAMES lists
    assert repr(splits) == "TextSplits('pydoc-text', train=418,613, val=23,256, test=23,257 characters, vocab_size=103)"


def test_the_shipped_text(splits):
    assert len(splits.text) == text.TEXT_CHARS == 465_126
    assert splits.vocab_size == len(splits.vocab) == 103
    assert list(splits.vocab) == sorted(set(splits.text))
    assert 90_000 < text.text_file().stat().st_size < 160_000


@pytest.mark.skipif(sys.version_info[:3] != text.TEXT_PYTHON,
                    reason="pydoc_data differs between Python versions; the asset was made on Python 3.11.7")
def test_the_asset_equals_pydoc_data_on_its_python():
    assert text.read_pydoc_text() == text.pydoc_text()


def test_splits_partition_the_text_in_order(splits):
    n = len(splits.text)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (n * 90 // 100, n * 5 // 100,
                                                                       n - n * 90 // 100 - n * 5 // 100)
    for part in (splits.train, splits.val, splits.test):
        assert part.dtype == torch.int64 and part.dim() == 1
    assert splits.decode(torch.cat([splits.train, splits.val, splits.test])) == splits.text
    assert splits.decode(splits.val) == splits.text[len(splits.train):len(splits.train) + len(splits.val)]


def test_small_text_sizes_and_too_short():
    s = text.TextSplits(SMALL, name="fox")
    assert (len(s.train), len(s.val), len(s.test)) == (162, 9, 9)
    assert s.vocab == tuple(sorted(set(SMALL)))
    text.TextSplits("x" * 40)  # the shortest text that splits: 36 / 2 / 2
    with pytest.raises(ValueError, match="too short"):
        text.TextSplits("x" * 39)
    with pytest.raises(TypeError, match="text must be a str"):
        text.TextSplits(b"bytes are not text" * 10)


def test_encode_decode_round_trip(splits):
    sample = "def f(x):\n    return x ** 2  # “squared” …"
    ids = splits.encode(sample)
    assert ids.dtype == torch.int64 and ids.shape == (len(sample),)
    assert splits.decode(ids) == sample
    assert splits.decode(ids.tolist()) == sample
    assert splits.decode(tuple(ids.tolist())) == sample
    assert splits.decode(ids.int()) == sample
    assert splits.encode("").shape == (0,) and splits.decode([]) == ""
    assert [splits.vocab[i] for i in splits.encode("ab")] == ["a", "b"]


def test_unknown_characters_and_bad_ids_are_refused(splits):
    with pytest.raises(ValueError, match=r"not in the vocabulary.*'€'.*position 3"):
        splits.encode("abc€")
    with pytest.raises(ValueError, match="vocabulary"):
        splits.encode("\U0001f600")  # beyond the largest code point of the vocabulary
    with pytest.raises(ValueError, match="vocabulary"):
        splits.encode("\x00")  # below the smallest
    with pytest.raises(TypeError, match="encode takes a str"):
        splits.encode(["a"])
    with pytest.raises(ValueError, match=r"id 103 .*\[0, 103\)"):
        splits.decode([1, 103])
    with pytest.raises(ValueError, match="id -1"):
        splits.decode(torch.tensor([-1]))
    with pytest.raises(ValueError, match="integer ids"):
        splits.decode(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="integer ids"):
        splits.decode([1, True])
    with pytest.raises(ValueError, match="1-d"):
        splits.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="1-d tensor or a list"):
        splits.decode("abc")


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_loader_shapes_and_shift(splits, split):
    loader = splits.loader(split, seq_len=16, batch_size=8, max_batches=5)
    got = list(loader)
    assert len(got) == len(loader) == 5
    ids = getattr(splits, split)
    for x, y in got:
        assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one character
        for row_x, row_y in zip(x, y):  # every row is a window of the split: y[-1] is the character after x[-1]
            window = splits.decode(torch.cat([row_x, row_y[-1:]]))
            assert window in splits.decode(ids)


def test_loader_is_deterministic_per_seed(splits):
    def batches_of(seed):
        return [x for x, _ in splits.loader("train", seq_len=32, batch_size=4, seed=seed, max_batches=3)]

    assert all(torch.equal(a, b) for a, b in zip(batches_of(0), batches_of(0)))
    assert not all(torch.equal(a, b) for a, b in zip(batches_of(0), batches_of(1)))
    loader = splits.loader("train", seq_len=32, batch_size=4, max_batches=3)
    first, second = [x for x, _ in loader], [x for x, _ in loader]  # epochs differ, a new loader repeats them
    assert not all(torch.equal(a, b) for a, b in zip(first, second))
    assert all(torch.equal(a, b) for a, b in zip(first, batches_of(0)))
    unshuffled = splits.loader("train", seq_len=32, batch_size=4, shuffle=False, max_batches=2)
    x, _ = next(iter(unshuffled))
    assert torch.equal(x.reshape(-1), splits.train[:128])  # shuffle=False: consecutive windows from the start


def test_a_peek_leaves_the_loader_unchanged(splits):
    loader = splits.loader("train", seq_len=8, batch_size=2, max_batches=2)
    (x0, y0), _ = batches.peek_batches(loader, reiterable=True)
    x, y = next(iter(loader))
    assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("split", ["val", "test"])
def test_val_and_test_read_consecutive_windows_once(splits, split):
    ids = getattr(splits, split)
    seq_len, batch_size = 50, 64
    loader = splits.loader(split, seq_len=seq_len, batch_size=batch_size)
    xs, ys = zip(*loader)
    windows = (len(ids) - 1) // seq_len
    assert len(loader) == math.ceil(windows / batch_size)
    assert all(len(x) == batch_size for x in xs[:-1]) and len(xs[-1]) == windows - batch_size * (len(xs) - 1)
    assert torch.equal(torch.cat(xs).reshape(-1), ids[:windows * seq_len])
    assert torch.equal(torch.cat(ys).reshape(-1), ids[1:windows * seq_len + 1])


def test_small_text_loaders():
    s = text.TextSplits(SMALL)
    x, y = next(iter(s.loader("val", seq_len=8, batch_size=4)))
    assert x.shape == (1, 8) and s.decode(x[0]) == SMALL[162:170] and s.decode(y[0]) == SMALL[163:171]
    with pytest.raises(ValueError, match=r"seq_len=9 is too long for the val split"):
        s.loader("val", seq_len=9)
    assert all(x.shape == (3, 8) for x, _ in s.loader("val", seq_len=8, batch_size=3, shuffle=True))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(split="validation"), ValueError, "split"),
    (dict(split=None), ValueError, "split"),
    (dict(seq_len=0), ValueError, "seq_len"),
    (dict(seq_len=1.5), ValueError, "seq_len"),
    (dict(seq_len=True), ValueError, "seq_len"),
    (dict(seq_len=10**7), ValueError, "seq_len"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size="32"), ValueError, "batch_size"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(max_batches=0), ValueError, "max_batches"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
])
def test_bad_loader_arguments(splits, kwargs, error, match):
    with pytest.raises(error, match=match):
        splits.loader(**kwargs)


def test_bad_load_arguments():
    with pytest.raises(ValueError, match="pydoc-text"):  # the unknown-name error lists the text too
        data.load("pydoc")
    with pytest.raises(ValueError, match="val_size and seed do not apply"):
        data.load("pydoc-text", val_size=100)
    with pytest.raises(ValueError, match="val_size and seed do not apply"):
        data.load("pydoc-text", seed=1)
    with pytest.raises(ValueError, match="seed"):
        data.load("pydoc-text", seed=-1)
    with pytest.raises(ValueError, match="unknown text"):
        text.load_text("shakespeare")


def test_damaged_asset_is_refused(tmp_path):
    good = text.text_file().read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    (tmp_path / "flipped.xz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="damaged.*reinstall"):
        text.read_pydoc_text(tmp_path / "flipped.xz")
    (tmp_path / "other.xz").write_bytes(lzma.compress(b"some other text"))
    with pytest.raises(ValueError, match="hash check.*reinstall"):
        text.read_pydoc_text(tmp_path / "other.xz")
    with pytest.raises(FileNotFoundError, match="reinstall"):
        text.read_pydoc_text(tmp_path / "missing.xz")
    with pytest.raises(TypeError, match="path"):
        text.read_pydoc_text(3)


def test_damaged_shipped_asset_fails_load(tmp_path, monkeypatch):
    bad = tmp_path / text.TEXT_FILE
    bad.write_bytes(b"not xz at all")
    monkeypatch.setattr(text, "text_file", lambda: bad)
    with pytest.raises(ValueError, match="damaged.*reinstall"):
        data.load("pydoc-text")


def test_write_text_asset_round_trips(tmp_path, monkeypatch):
    path = tmp_path / "t.xz"
    digest = text.write_text_asset(SMALL, path)
    monkeypatch.setattr(text, "TEXT_SHA256", digest)
    assert text.read_pydoc_text(path) == SMALL


def test_bits_per_char_and_perplexity(splits):
    assert text.bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert text.bits_per_char(math.log(103)) == pytest.approx(math.log2(103))
    assert text.perplexity(math.log(103)) == pytest.approx(103)
    assert splits.perplexity(torch.tensor(0.0)) == 1.0 and splits.bits_per_char(torch.tensor([0.0])) == 0.0
    for bad in (-0.1, float("nan"), float("inf"), True, "1.0", None):
        with pytest.raises(ValueError, match="mean_nll"):
            text.bits_per_char(bad)
        with pytest.raises(ValueError, match="mean_nll"):
            text.perplexity(bad)
    with pytest.raises(ValueError, match="mean_nll must be one number"):
        text.perplexity(torch.zeros(3))
