"""Text for the character-level language model: the Python documentation, split by position and read one
character at a time. See notebooks/12_transformers.ipynb.

The text is every documentation topic that ships with Python (`pydoc_data.topics.topics`: what `help("if")` or
`help("FORMATTING")` prints), joined in sorted order. Its content changes between Python versions, so the kit
ships a compressed copy made on Python 3.11.7 (minprune/assets/pydoc_topics.txt.xz, checked against its SHA-256
when read): every learner trains and evaluates on the same 465,126 characters.

    splits = mp.data.load("pydoc-text")          # a TextSplits
    splits.vocab_size                             # 103 distinct characters
    ids = splits.encode("def f(x):")              # LongTensor of character ids
    splits.decode(ids)                            # 'def f(x):'
    for x, y in splits.loader("train", seq_len=64, batch_size=32):
        ...                                       # y is x shifted by one: the next character at every position

The splits are fixed slices of the text (the first 90% trains, the next 5% validates, the last 5% tests), not a
shuffle: shuffling characters would destroy the text, and neighbouring windows would leak into each other.
Language models are usually compared in bits per character (`bits_per_char`) or perplexity (`perplexity`), both
computed from the mean cross-entropy loss in nats.
"""

from __future__ import annotations

import hashlib
import lzma
import math
from pathlib import Path

import numpy as np
import torch

from minprune.assets import asset_dir
from minprune.data import check_path, check_split
from minprune.validate import finite_number, non_negative_int, positive_int

TEXT_NAME = "pydoc-text"
TEXT_FILE = "pydoc_topics.txt.xz"
# SHA-256 of the text's UTF-8 bytes (of what the file holds once decompressed), its length and where it came from.
TEXT_SHA256 = "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee"
TEXT_CHARS = 465_126
TEXT_PYTHON = (3, 11, 7)  # the Python whose pydoc_data made the shipped file (tools/make_text_asset.py)
SPLIT_PERCENT = (90, 5, 5)  # train / val / test, by position
REINSTALL = ("reinstall minprune (pip install --force-reinstall minprune, or git checkout the file in a source "
             "checkout) or regenerate it with tools/make_text_asset.py on Python 3.11.7")


def text_file() -> Path:
    """Where the shipped text is: minprune/assets/pydoc_topics.txt.xz."""
    return asset_dir(TEXT_FILE)


def pydoc_text() -> str:
    """The documentation topics of the Python running now, joined as the shipped file joins them.

    Equal to `read_pydoc_text()` on Python 3.11.7 only; other versions give a (slightly) different text, which is
    why the kit ships its own copy.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def read_pydoc_text(path=None) -> str:
    """The shipped text (465,126 characters), decompressed and checked against TEXT_SHA256.

    FileNotFoundError when the file is missing and ValueError when it is damaged (not xz data, not UTF-8, or a
    different text): both say to reinstall.
    """
    path = Path(check_path(path, "path", none_ok=True)) if path is not None else text_file()
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; it ships inside the package: {REINSTALL}")
    try:
        data = lzma.decompress(path.read_bytes())
    except lzma.LZMAError as exc:
        raise ValueError(f"{path} is damaged (not a readable xz file: {exc}); {REINSTALL}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != TEXT_SHA256:
        raise ValueError(f"{path} is damaged: it failed its hash check (got {digest[:12]}..., expected "
                         f"{TEXT_SHA256[:12]}...); {REINSTALL}")
    return data.decode("utf-8")


def write_text_asset(text: str, path) -> str:
    """Write `text` xz-compressed to `path` (for tools/make_text_asset.py); returns the SHA-256 of its UTF-8 bytes."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    data = text.encode("utf-8")
    Path(check_path(path, "path")).write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    return hashlib.sha256(data).hexdigest()


def _nll(mean_nll, name: str) -> float:
    if isinstance(mean_nll, torch.Tensor):
        if mean_nll.numel() != 1:
            raise ValueError(f"{name} must be one number (the mean loss), got a tensor of shape "
                             f"{tuple(mean_nll.shape)}")
        mean_nll = mean_nll.item()
    return finite_number(mean_nll, name, low=0)


def bits_per_char(mean_nll) -> float:
    """The mean cross-entropy loss per character, `mean_nll` in nats (what F.cross_entropy returns), in bits.

    Bits per character is how many yes/no questions, on average, the model needs to guess the next character:
    8 for a model that knows nothing of 256 byte values, log2(vocab_size) for uniform guessing over the
    vocabulary, about 1 for a good model of English text. bits = nats / ln 2.
    """
    return _nll(mean_nll, "mean_nll") / math.log(2)


def perplexity(mean_nll) -> float:
    """exp(mean_nll): the number of characters the model is, on average, as unsure between as if it picked
    uniformly among them (1 is certain; vocab_size is uniform guessing). `mean_nll` is in nats."""
    return math.exp(_nll(mean_nll, "mean_nll"))


class TextLoader:
    """The (x, y) batches of one split, each a LongTensor of shape (batch, seq_len); y[:, t] is the character
    after x[:, t]. Iterate it again for another epoch; `len()` is the number of batches per epoch.

    Shuffled: windows start at random offsets drawn from `generator` (seeded once, so the epochs differ but a
    new loader with the same seed repeats them), every batch full. Not shuffled: consecutive windows from the
    start of the split, the last batch possibly smaller; the tail shorter than one window is left out.
    """

    def __init__(self, ids: torch.Tensor, seq_len: int, batch_size: int, shuffle: bool, seed: int,
                 max_batches: int | None):
        self.ids, self.seq_len, self.batch_size, self.shuffle = ids, seq_len, batch_size, shuffle
        self.windows = (len(ids) - 1) // seq_len  # windows of seq_len + 1 characters (x and its shifted y)
        batches = math.ceil(self.windows / batch_size)
        self.batches = batches if max_batches is None else min(batches, max_batches)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.batches

    def _starts(self) -> torch.Tensor:
        if self.shuffle:
            highest = len(self.ids) - self.seq_len - 1  # the last start whose y still fits
            return torch.randint(0, highest + 1, (self.batches * self.batch_size,), generator=self.generator)
        return torch.arange(min(self.windows, self.batches * self.batch_size)) * self.seq_len

    def __iter__(self):
        starts = self._starts()
        offsets = torch.arange(self.seq_len + 1)
        for b in range(self.batches):
            chunk = self.ids[starts[b * self.batch_size:(b + 1) * self.batch_size, None] + offsets]
            yield chunk[:, :-1], chunk[:, 1:]

    def __repr__(self):
        order = "random windows" if self.shuffle else "consecutive windows"
        return (f"TextLoader({len(self)} batches of {self.batch_size} x {self.seq_len} characters, {order}, "
                f"from {len(self.ids):,} characters)")


class TextSplits:
    """A text cut into train / val / test by position (90% / 5% / 5%), with its character vocabulary.

    `vocab` is the sorted tuple of the distinct characters of the whole text; a character's id is its place
    in it. `train`, `val` and `test` are the splits as 1-d int64 tensors of ids, in the text's order.
    Build one from any text: `TextSplits("your text ...", name="mine")` (at least 40 characters).
    """

    bits_per_char = staticmethod(bits_per_char)
    perplexity = staticmethod(perplexity)

    def __init__(self, text: str, name: str = "text"):
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        n = len(text)
        n_train, n_val = n * SPLIT_PERCENT[0] // 100, n * SPLIT_PERCENT[1] // 100
        sizes = (n_train, n_val, n - n_train - n_val)
        if min(sizes) < 2:
            raise ValueError(f"text is too short to split: {n} characters give train/val/test of "
                             f"{'/'.join(map(str, sizes))}; each needs 2 or more (40 characters in all)")
        self.name, self.text = name, text
        codes = _codepoints(text)
        self._codes = np.unique(codes)  # sorted code points = sorted characters
        self.vocab = tuple(chr(c) for c in self._codes)
        ids = torch.from_numpy(np.searchsorted(self._codes, codes).astype(np.int64))
        self.train, self.val, self.test = ids[:n_train], ids[n_train:n_train + n_val], ids[n_train + n_val:]

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters: the size of the model's embedding and of its output layer."""
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """The ids of `text`'s characters, a 1-d LongTensor; ValueError naming the characters not in `vocab`."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__} {text!r:.60}")
        codes = _codepoints(text)
        ids = np.searchsorted(self._codes, codes)
        known = (ids < len(self._codes)) & (self._codes[np.minimum(ids, len(self._codes) - 1)] == codes)
        if not known.all():
            unknown = sorted({chr(c) for c in codes[~known]})
            first = int(np.argmin(known))
            raise ValueError(f"cannot encode {len(unknown)} character(s) not in the vocabulary of {self.name!r}: "
                             f"{''.join(unknown[:10])!r}{' ...' if len(unknown) > 10 else ''} (first at position "
                             f"{first}); use only characters of `vocab`")
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids) -> str:
        """The text of a sequence of ids: a 1-d integer tensor or a list of ints, each in [0, vocab_size)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence (a 1-d tensor), got shape {tuple(ids.shape)}; "
                                 f"for a batch, decode each row: [splits.decode(row) for row in x]")
            if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise ValueError(f"decode takes integer ids, got a {ids.dtype} tensor")
            values = ids.tolist()
        elif isinstance(ids, (list, tuple)):
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                bad = next(i for i in ids if not isinstance(i, int) or isinstance(i, bool))
                raise ValueError(f"decode takes integer ids, got {bad!r:.60} in the list")
            values = list(ids)
        else:
            raise TypeError(f"decode takes a 1-d tensor or a list of ids, got {type(ids).__name__} {ids!r:.60}")
        bad = [i for i in values if not 0 <= i < len(self.vocab)]
        if bad:
            raise ValueError(f"id {bad[0]} is not a character id: ids must be in [0, {len(self.vocab)})")
        return "".join(self.vocab[i] for i in values)

    def loader(self, split: str = "train", seq_len: int = 64, batch_size: int = 32, *, shuffle=None, seed: int = 0,
               max_batches: int | None = None) -> TextLoader:
        """(x, y) batches of `split` for next-character prediction: x and y of shape (batch_size, seq_len),
        y = x shifted by one character. The training split is shuffled (windows at random offsets, seeded by
        `seed`); val and test give consecutive windows, so one pass reads the whole split once.
        `max_batches` caps the batches per epoch, for quick runs."""
        ids = getattr(self, check_split(split))
        positive_int(seq_len, "seq_len")
        positive_int(batch_size, "batch_size")
        non_negative_int(seed, "seed")
        positive_int(max_batches, "max_batches", none_ok=True)
        if shuffle is not None and not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True, False or None (shuffle the training split only), got {shuffle!r}")
        if seq_len + 1 > len(ids):
            raise ValueError(f"seq_len={seq_len} is too long for the {split} split of {self.name!r}: it has "
                             f"{len(ids)} characters and a window needs seq_len + 1 (x and the shifted y)")
        shuffle = (split == "train") if shuffle is None else shuffle
        return TextLoader(ids, seq_len, batch_size, shuffle, seed, max_batches)

    def __repr__(self):
        sizes = f"train={len(self.train):,}, val={len(self.val):,}, test={len(self.test):,}"
        return f"TextSplits({self.name!r}, {sizes} characters, vocab_size={self.vocab_size})"


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def load_text(name: str = TEXT_NAME) -> TextSplits:
    """The shipped text as a TextSplits: `load_text()` is `mp.data.load("pydoc-text")`."""
    if name != TEXT_NAME:
        raise ValueError(f"unknown text {name!r}; the kit ships {TEXT_NAME!r}")
    return TextSplits(read_pydoc_text(), name=TEXT_NAME)

