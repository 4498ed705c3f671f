"""Chapter 4 (fine-tuning): the exercises' designed cases and hints."""

from __future__ import annotations

import torch
from torch import nn

from minprune.course.exercises import exercise
from minprune.train import accuracy
from minprune.unstructured.masks import iterative_sparsities
from minprune.unstructured.sparse_storage import encode


def _dropout_bn_model(training: bool) -> nn.Module:
    """A 2-feature, 3-class model whose predictions change in train mode (Dropout, BatchNorm statistics)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    return model.train(training)


def _uneven_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of 4, 4 and 1 examples: the mean of per-batch accuracies is not the accuracy."""
    g = torch.Generator().manual_seed(42)
    x = torch.randn(9, 2, generator=g)
    y = torch.randint(0, 3, (9,), generator=g)
    return [(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])]


def _accuracy_cases() -> list[tuple]:
    batches = _uneven_batches()
    model = _dropout_bn_model(training=False)
    with torch.no_grad():  # the single last example is predicted wrongly, the others right half the time
        predicted = torch.cat([model(x).argmax(1) for x, _ in batches])
    labels = predicted.clone()
    labels[[0, 1, 4, 8]] = (labels[[0, 1, 4, 8]] + 1) % 3
    relabelled = [(x, labels[i:i + len(y)]) for (x, y), i in zip(batches, (0, 4, 8))]
    return [(model, relabelled), (_dropout_bn_model(training=True), relabelled)]


def _per_batch_mean(case, expected, got):
    model, loader = case
    if not isinstance(got, (int, float)):
        return None
    means = [accuracy(model, [batch]) for batch in loader]
    if abs(got - sum(means) / len(means)) < 1e-6 and abs(got - expected) > 1e-6:
        return "that is the mean of the batches' accuracies; the last batch is shorter: count correct and seen over all"
    return None


def _fraction(case, expected, got):
    if isinstance(got, (int, float)) and abs(got * 100 - expected) <= 1e-4 * max(1.0, abs(expected)):
        return "in percent (0-100), not a fraction"
    return None


exercise("4.2", "accuracy in percent over all batches of a loader", accuracy, _accuracy_cases,
         hint="count the correct predictions over all batches, in eval mode",
         diagnoses=(_fraction, _per_batch_mean), dtype_strict=False)


# Exercise 4.1: the iterative sparsity schedule ------------------------------------------------------------------

def _schedule_cases() -> list[tuple]:
    """Spans where a linear schedule, a per-round fraction or an off-by-one differ from the total after each round."""
    return [(0.75, 2), (0.9, 1), (0.0, 3), (0.5, 7), (0.999, 3), (0.96, 2)]


def _linear_schedule(case, expected, got):
    final, rounds = case
    if len(got) == rounds and all(abs(g - final * k / rounds) < 1e-9 for k, g in zip(range(1, rounds + 1), got)):
        return ("the sparsities grow in equal steps; but each round removes the same fraction of the weights that "
                "survived, so the kept fractions multiply from round to round")
    return None


def _per_round_fraction(case, expected, got):
    final, rounds = case
    if rounds > 1 and len(got) == rounds and max(got) - min(got) < 1e-9 and abs(got[0] - expected[0]) < 1e-9:
        return ("every entry is the fraction one round removes; list the total sparsity after each round instead "
                "(it grows, and the last one is `final`)")
    return None


def _rounds_off_by_one(case, expected, got):
    final, rounds = case
    if len(got) != rounds:
        return f"{rounds} rounds give {rounds} sparsities: after round 1, round 2, ..., round {rounds}"
    if abs(got[0]) < 1e-12 < final and all(abs(g - e) < 1e-9 for g, e in zip(got[1:], expected)):
        return "the list starts with the sparsity after round 1 (not 0) and ends with `final` after the last round"
    return None


def _not_final(case, expected, got):
    final, rounds = case
    if len(got) == rounds and abs(got[-1] - final) > 1e-6:
        return (f"after the last round the total sparsity must be final = {final}: one round removes a smaller "
                "fraction, the one that, repeated `rounds` times, leaves 1 - final of the weights")
    return None


def _rounded(case, expected, got):
    if len(got) == len(expected) and all(abs(g - e) < 5e-4 for g, e in zip(got, expected)):
        return "close, but not equal: return the exact sparsities, without rounding them"
    return None


exercise("4.1", "total sparsity after each round of an iterative schedule", iterative_sparsities, _schedule_cases,
         hint="the fraction of weights that survives one round, multiplied over k rounds, survives round k",
         diagnoses=(_rounds_off_by_one, _per_round_fraction, _linear_schedule, _not_final, _rounded),
         atol=1e-12, rtol=1e-9)


# Exercise 4.3: the bytes of the bitmask format ------------------------------------------------------------------

def bitmask_bytes(W: torch.Tensor) -> int:
    """Bytes of `W` in the bitmask format of `sparse_storage.encode`, without the header every format writes.

    See notebooks/04_fine_tuning.ipynb.
    """
    header = len(encode(W, "dense")) - W.numel() * W.element_size()  # the same header in every format
    return len(encode(W, "bitmask")) - header


def _bitmask_cases() -> list[tuple]:
    """Entry counts that are not a multiple of 8 (in all, or per row), zeros, and 2- and 8-byte values."""
    g = torch.Generator().manual_seed(43)
    sparse = torch.randn(3, 11, generator=g)
    sparse[sparse.abs() < 1.2] = 0  # 33 entries (5 bytes of bits), 3 rows of 11 (6 bytes rounded row by row), 4 kept
    conv = torch.randn(4, 3, 3, 3, generator=g)
    conv[conv < 0] = 0
    return [(sparse,), (torch.zeros(2, 7),), (torch.randn(3, 9, generator=g).half(),), (conv.double(),),
            (torch.tensor([0.0, -0.0, 2.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3.0, 0.0]),), (torch.ones(16, 8),)]


def _bits_of(case, got):
    """How many bytes of `got` the bits would take if the values were counted right (None when not an int)."""
    (W,) = case
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        return None
    return got - int(torch.count_nonzero(W)) * W.element_size()


def _bits_not_rounded_up(case, expected, got):
    (W,) = case
    bits = _bits_of(case, got)
    if bits is not None and W.numel() % 8 and abs(bits - W.numel() / 8) < 1 and bits != (W.numel() + 7) // 8:
        return f"{W.numel()} bits do not fill whole bytes: the last byte is stored too, so round the bytes up"
    return None


def _rounded_per_row(case, expected, got):
    (W,) = case
    per_row = W.shape[0] * ((W[0].numel() + 7) // 8)
    if W.dim() > 1 and per_row != (W.numel() + 7) // 8 and _bits_of(case, got) == per_row:
        return "the bits of all entries are packed one after another, not row by row: round up once, over all of W"
    return None


def _bits_for_kept_only(case, expected, got):
    (W,) = case
    nonzero = int(torch.count_nonzero(W))
    if nonzero != W.numel() and _bits_of(case, got) in (nonzero // 8, (nonzero + 7) // 8, nonzero / 8):
        return "there is one bit for every entry, zero or not (the bit says which): count all of W's entries"
    return None


def _value_bytes(case, expected, got):
    (W,) = case
    if W.element_size() != 4 and isinstance(_bits_of(case, got), (int, float)):
        nonzero = int(torch.count_nonzero(W))
        if got - 4 * nonzero == (W.numel() + 7) // 8:
            return f"this tensor is {W.dtype}: a value takes W.element_size() = {W.element_size()} bytes, not 4"
    return None


def _byte_per_entry(case, expected, got):
    (W,) = case
    if _bits_of(case, got) == W.numel():
        return "one *bit* per entry, packed 8 to a byte: the mask takes an eighth of the entries in bytes"
    return None


exercise("4.3", "bytes of the bitmask format (bits packed 8 per byte, then the nonzero values)", bitmask_bytes,
         _bitmask_cases, hint="one bit per entry packed 8 to a byte (the last byte padded), then the nonzero values",
         diagnoses=(_value_bytes, _byte_per_entry, _rounded_per_row, _bits_not_rounded_up, _bits_for_kept_only),
         dtype_strict=False)
