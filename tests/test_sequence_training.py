"""fit and evaluate train and measure sequence models as they do classifiers: the classes are the logits' last
axis, so a CharGPT's (batch, t, vocabulary) logits and (batch, t) next-character labels need no loss of their own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import minprune as mp
from minprune import batches


@pytest.fixture(scope="module")
def text():
    return mp.load("pydoc-text")


def _gpt(text):
    torch.manual_seed(0)
    return mp.build("chargpt", vocab_size=text.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)


def test_evaluate_is_the_mean_negative_log_likelihood_over_every_position(text):
    model = _gpt(text)
    loader = text.loader("val", seq_len=16, batch_size=8, max_batches=3)
    with torch.no_grad():
        nll = torch.cat([F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none") for x, y in loader])
        hits = torch.cat([(model(x).argmax(-1) == y).flatten() for x, y in loader])
    result = mp.evaluate(model, loader)
    assert result["loss"] == pytest.approx(nll.mean().item(), rel=1e-6)
    assert result["acc"] == pytest.approx(100 * hits.float().mean().item())
    assert mp.perplexity(result["loss"]) == pytest.approx(torch.exp(nll.mean()).item(), rel=1e-6)


def test_fit_trains_a_character_model(text):
    model = _gpt(text)
    val = text.loader("val", seq_len=16, batch_size=32, max_batches=2)
    before = mp.evaluate(model, val)["loss"]
    history = mp.fit(model, text.loader("train", seq_len=16, batch_size=16, max_batches=40),
                     mp.TrainConfig(epochs=1, lr=3e-3), progress=False)
    assert len(history.train_loss) == 1
    assert mp.evaluate(model, val)["loss"] < before - 0.5  # from about ln(103) = 4.6 nats per character


def test_sequence_labels_are_checked_against_the_vocabulary(text):
    model = _gpt(text)
    x = text.train[:32].reshape(2, 16)
    assert batches.check_batch_fits(model, (x, x.roll(-1)), "loader") == text.vocab_size
    with pytest.raises(ValueError, match=f"yields label {text.vocab_size}, but the model has {text.vocab_size}"):
        batches.check_batch_fits(model, (x, torch.full_like(x, text.vocab_size)), "loader")
    with pytest.raises(ValueError, match=r"labels of shape \(2,\), but the model needs \(2, 16\)"):
        batches.check_batch_fits(model, (x, x[:, 0]), "loader")
