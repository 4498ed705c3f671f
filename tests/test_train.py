import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune import train


def _toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = (x.flatten(1)[:, :10].argmax(1))  # learnable: the label is the position of the largest of 10 pixels
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)


def test_fit_learns_and_records_history():
    mp.seed_everything(0)
    model = mp.build("lenet300")
    loader = _toy()
    before = mp.evaluate(model, loader)["acc"]
    history = mp.fit(model, loader, mp.TrainConfig(epochs=8, lr=3e-3), val_loader=loader, progress=False)
    assert history.epoch == list(range(1, 9)) and len(history.val_acc) == 8
    assert history.train_loss[-1] < history.train_loss[0]
    assert mp.evaluate(model, loader)["acc"] > before + 30


def _train_once(seed):
    mp.seed_everything(seed)
    model = mp.build("lenet5")
    mp.fit(model, _toy(seed=seed), mp.TrainConfig(epochs=1), progress=False)
    return model.state_dict()


def test_training_is_bit_for_bit_reproducible():
    a, b = _train_once(0), _train_once(0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _train_once(1)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_callbacks_are_called():
    calls = {"step": 0, "epoch": []}

    class Counter:
        def on_step_end(self, model, step):
            calls["step"] = step

        def on_epoch_end(self, model, epoch, history):
            calls["epoch"].append(epoch)

    loader = _toy(64)
    mp.fit(mp.build("lenet300"), loader, mp.TrainConfig(epochs=2), callbacks=[Counter()], progress=False)
    assert calls == {"step": 2 * len(loader), "epoch": [1, 2]}


def test_custom_loss_fn_is_used():
    seen = []

    def loss_fn(model, x, y):
        logits = model(x)
        seen.append(len(y))
        return torch.nn.functional.cross_entropy(logits, y) * 0.0 + logits.pow(2).mean(), logits

    mp.fit(mp.build("lenet300"), _toy(64), mp.TrainConfig(epochs=1), loss_fn=loss_fn, progress=False)
    assert sum(seen) == 64


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizers(name):
    assert train.make_optimizer(mp.build("lenet300"), name).param_groups[0]["lr"] == 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        train.make_optimizer(mp.build("lenet300"), "rmsprop")
    with pytest.raises(ValueError, match="epochs"):
        mp.fit(mp.build("lenet300"), _toy(), mp.TrainConfig(epochs=-1))
    with pytest.raises(ValueError, match="seed"):
        mp.seed_everything(-3)
    with pytest.raises(ValueError, match="empty"):
        mp.evaluate(mp.build("lenet300"), [])


def test_diverging_loss_raises():
    with pytest.raises(FloatingPointError, match="learning rate"):
        mp.fit(mp.build("lenet300"), _toy(), mp.TrainConfig(epochs=3, lr=1e6, optimizer="sgd"), progress=False)


def test_evaluate_restores_mode():
    model = mp.build("vgg", widths=[4])
    model.train()
    mp.evaluate(model, _toy(32))
    assert model.training
