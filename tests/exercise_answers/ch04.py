"""Wrong and right answers to chapter 4's exercises."""

import math

import numpy as np
import torch


def accuracy_per_batch_mean(model, loader):
    model.eval()
    with torch.no_grad():
        accs = [100.0 * float((model(x).argmax(1) == y).float().mean()) for x, y in loader]
    return sum(accs) / len(accs)


def accuracy_left_in_eval(model, loader):
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            seen += len(y)
    return 100.0 * correct / seen


def accuracy_in_train_mode(model, loader):
    correct = seen = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            seen += len(y)
    return 100.0 * correct / seen


def accuracy_as_fraction(model, loader):
    was = model.training
    model.eval()
    with torch.no_grad():
        hits = torch.cat([model(x).argmax(1) == y for x, y in loader])
    model.train(was)
    return float(hits.float().mean())


def accuracy_concatenated(model, loader):
    was = model.training
    model.eval()
    with torch.no_grad():
        x = torch.cat([x for x, _ in loader])
        y = torch.cat([y for _, y in loader])
        result = 100.0 * (model(x).argmax(dim=-1) == y).double().mean().item()
    model.train(was)
    return result




# Exercise 4.1 ---------------------------------------------------------------------------------------------------

def schedule_linear(final, rounds):
    return [final * k / rounds for k in range(1, rounds + 1)]


def schedule_per_round_fraction(final, rounds):
    keep = (1 - final) ** (1 / rounds)
    return [1 - keep] * rounds


def schedule_from_zero(final, rounds):
    keep = (1 - final) ** (1 / rounds)
    return [1 - keep**k for k in range(rounds)]


def schedule_rounded(final, rounds):
    keep = (1 - final) ** (1 / rounds)
    return [round(1 - keep**k, 4) for k in range(1, rounds + 1)]


def schedule_final_per_round(final, rounds):  # removes `final` of the survivors every round
    return [1 - (1 - final) ** k for k in range(1, rounds + 1)]


def schedule_multiplied(final, rounds):
    keep_per_round, kept, out = math.exp(math.log1p(-final) / rounds), 1.0, []
    for _ in range(rounds):
        kept *= keep_per_round
        out.append(1.0 - kept)
    return out


# Exercise 4.3 ---------------------------------------------------------------------------------------------------

def bitmask_bits_floor(W):
    return W.numel() // 8 + int(torch.count_nonzero(W)) * W.element_size()


def bitmask_rounded_per_row(W):
    bits = W.shape[0] * math.ceil(W[0].numel() / 8)
    return bits + int(torch.count_nonzero(W)) * W.element_size()


def bitmask_bits_for_kept_only(W):
    nonzero = int(torch.count_nonzero(W))
    return math.ceil(nonzero / 8) + nonzero * W.element_size()


def bitmask_four_bytes_a_value(W):
    return math.ceil(W.numel() / 8) + 4 * int((W != 0).sum())


def bitmask_byte_per_entry(W):
    return W.numel() + int(torch.count_nonzero(W)) * W.element_size()


def bitmask_packed(W):
    bits = (W.detach().flatten() != 0).numpy()
    return len(np.packbits(bits)) + int(bits.sum()) * W.element_size()


WRONG = {
    "4.1": [schedule_linear, schedule_per_round_fraction, schedule_from_zero, schedule_rounded,
            schedule_final_per_round],
    "4.2": [accuracy_per_batch_mean, accuracy_left_in_eval, accuracy_in_train_mode, accuracy_as_fraction],
    "4.3": [bitmask_bits_floor, bitmask_rounded_per_row, bitmask_bits_for_kept_only, bitmask_four_bytes_a_value,
            bitmask_byte_per_entry],
}
RIGHT = {"4.1": [schedule_multiplied], "4.2": [accuracy_concatenated], "4.3": [bitmask_packed]}
