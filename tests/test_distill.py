"""Distillation: the Hinton loss against hand-computed values, its limits, hints, and the training loop."""

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune.distillation import augment, losses


def _logits(seed, n=8, k=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 3, torch.randint(0, k, (n,), generator=g)


def test_kd_loss_hand_computed():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([0])
    T, alpha = 2.0, 0.5
    p_t = [math.exp(0) / (math.exp(0) + math.exp(0.5)), math.exp(0.5) / (math.exp(0) + math.exp(0.5))]
    p_s = [p_t[1], p_t[0]]  # mirrored logits
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    ce = -math.log(math.exp(1) / (math.exp(1) + 1))
    expected = alpha * T * T * kl + (1 - alpha) * ce
    got = losses.kd_loss(s, t, y, temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), temperature=st.floats(0.5, 20))
def test_alpha_zero_is_cross_entropy(seed, temperature):
    s, y = _logits(seed)
    t, _ = _logits(seed + 1)
    assert torch.allclose(losses.kd_loss(s, t, y, temperature=temperature, alpha=0.0), F.cross_entropy(s, y))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), temperature=st.floats(0.5, 20))
def test_soft_part_is_zero_when_student_equals_teacher_and_nonnegative(seed, temperature):
    s, y = _logits(seed)
    t, _ = _logits(seed + 7)
    assert losses.kd_loss(s, s.clone(), y, temperature=temperature, alpha=1.0).item() == pytest.approx(0, abs=1e-5)
    assert losses.kd_loss(s, t, y, temperature=temperature, alpha=1.0).item() >= -1e-6


def test_t1_alpha1_matches_soft_cross_entropy_oracle():
    # KL(p_t || p_s) = CE(p_t, p_s) - H(p_t): torch's soft-label cross entropy is the oracle
    s, y = _logits(3)
    t, _ = _logits(4)
    p_t = F.softmax(t, 1)
    oracle = F.cross_entropy(s, p_t) - (-(p_t * p_t.log()).sum(1).mean())
    assert torch.allclose(losses.kd_loss(s, t, y, temperature=1.0, alpha=1.0), oracle, atol=1e-6)


def test_teacher_gets_no_gradient():
    s, y = _logits(1)
    s.requires_grad_(True)
    t, _ = _logits(2)
    t.requires_grad_(True)
    losses.kd_loss(s, t, y).backward()
    assert t.grad is None and s.grad is not None


def test_soft_targets_flatten_with_temperature():
    logits, _ = _logits(5)
    entropies = [-(p * p.log()).sum(1).mean().item() for p in (losses.soft_targets(logits, T) for T in (1, 4, 20))]
    assert entropies[0] < entropies[1] < entropies[2] <= math.log(logits.shape[1]) + 1e-6


@pytest.mark.parametrize("kwargs, word", [({"temperature": 0}, "temperature"), ({"alpha": 1.5}, "alpha"),
                                          ({"temperature": -1.0}, "temperature"), ({"alpha": -0.1}, "alpha")])
def test_bad_arguments_name_themselves(kwargs, word):
    s, y = _logits(0)
    with pytest.raises(ValueError, match=word):
        losses.kd_loss(s, s, y, **kwargs)


def test_attention_map_and_hint_loss():
    f = torch.randn(2, 6, 7, 7)
    a = losses.attention_map(f)
    assert a.shape == (2, 49) and torch.allclose(a.norm(dim=1), torch.ones(2))
    # channel count may differ; scaling the features does not change the attention
    assert losses.hint_loss(f[:, :3] * 5, torch.cat([f[:, :3], f[:, :3]], 1)).item() == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="spatial"):
        losses.hint_loss(f, torch.randn(2, 6, 5, 5))


def _tiny_cnn():
    mp.seed_everything(0)
    return mp.build("lenet5", input_shape=(1, 28, 28), num_classes=10)


def test_distill_loss_fn_with_hints_trains_only_the_student():
    teacher, student = _tiny_cnn(), mp.build("lenet5", channels=[3, 8])
    before = copy.deepcopy(teacher.state_dict())
    loss_fn = mp.distill_loss(teacher, mp.KDConfig(hints=["features.2", "features.5"]))
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    loss, logits = loss_fn(student, x, y)
    loss.backward()
    assert logits.shape == (4, 10)
    assert all(p.grad is None for p in teacher.parameters())
    assert student.features[0].weight.grad is not None
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher._forward_hooks and not student.features[2]._forward_hooks  # hooks removed


def test_distill_trains_a_student_and_rejects_bad_hints():
    splits = mp.load("mnist-small")
    teacher, student = _tiny_cnn(), mp.build("lenet5", channels=[3, 8])
    state = copy.deepcopy(student.state_dict())
    with pytest.raises(ValueError, match="nope"):
        mp.distill_student(student, teacher, splits.loader("train", 64), mp.KDConfig(hints=["nope"]),
                           progress=False)
    assert all(torch.equal(state[k], v) for k, v in student.state_dict().items())  # untouched
    with pytest.raises(ValueError, match="different"):
        mp.distill_student(teacher, teacher, splits.loader("train", 64))
    small = torch.utils.data.Subset(splits.train, range(256))
    loader = torch.utils.data.DataLoader(small, batch_size=64)
    history = mp.distill_student(student, teacher, loader, train=mp.TrainConfig(epochs=2), progress=False)
    assert len(history.train_loss) == 2 and history.train_loss[1] < history.train_loss[0]


def test_random_shift_moves_each_image_by_whole_pixels_within_the_limit():
    mp.seed_everything(0)
    x = torch.zeros(32, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0  # one bright pixel in the middle of a background of zeros
    shifted = augment.random_shift(x, 2)
    assert shifted.shape == x.shape and torch.equal(x[:, 0, 4, 4], torch.ones(32))  # the input is untouched
    rows, cols = (shifted[:, 0] == 1).nonzero()[:, 1], (shifted[:, 0] == 1).nonzero()[:, 2]
    assert shifted.sum().item() == 32 and rows.sub(4).abs().max() <= 2 and cols.sub(4).abs().max() <= 2
    assert len({(int(r), int(c)) for r, c in zip(rows, cols)}) > 5  # each image gets its own offset
    assert torch.equal(augment.random_shift(x, 0), x)
    edge = torch.arange(16.0).reshape(1, 1, 4, 4)  # replicate padding repeats edge values, never invents new ones
    assert set(augment.random_shift(edge.expand(8, 1, 4, 4), 1).unique().tolist()) <= set(range(16))


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_random_shift_and_with_shifts_reject_bad_shifts(bad):
    with pytest.raises(ValueError, match="max_shift"):
        augment.random_shift(torch.zeros(1, 1, 4, 4), bad)
    with pytest.raises(ValueError, match="max_shift"):
        augment.with_shifts(mp.distill_loss(_tiny_cnn()), bad)


class Record(torch.nn.Module):
    """A linear model on (batch, 1, 4, 4) images that records the last input it saw in `seen[key]`."""

    def __init__(self, seen: dict, key: str):
        super().__init__()
        self.seen, self.key, self.lin = seen, key, torch.nn.Linear(16, 3)

    def forward(self, x):
        self.seen[self.key] = x.clone()
        return self.lin(x.flatten(1))


def test_with_shifts_shows_teacher_and_student_the_same_images():
    seen = {}
    mp.seed_everything(1)
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    loss_fn = augment.with_shifts(mp.distill_loss(Record(seen, "teacher")), 1)
    loss_fn(Record(seen, "student"), x, y)
    assert torch.equal(seen["teacher"], seen["student"]) and not torch.equal(seen["student"], x)


def test_mix_images_blends_pairs_from_the_batch_with_per_image_weights():
    mp.seed_everything(0)
    x = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 2, 2).clone()  # image i is filled with the value i
    mixed, lam, partner = augment.mix_images(x, 1.0)
    assert mixed.shape == x.shape and lam.shape == (6,) and sorted(partner.tolist()) == list(range(6))
    assert ((lam >= 0) & (lam <= 1)).all() and len(set(lam.tolist())) == 6  # each image its own weight
    expected = lam * torch.arange(6.0) + (1 - lam) * partner.float()
    assert torch.allclose(mixed[:, 0, 0, 0], expected) and torch.equal(x[:, 0, 0, 0], torch.arange(6.0))
    mp.seed_everything(0)
    again, _, _ = augment.mix_images(x, 1.0)
    assert torch.equal(again, mixed)  # seeded runs repeat


def test_mixed_labels_are_probabilities_that_match_the_mixing_and_feed_cross_entropy():
    y, lam, partner = torch.tensor([0, 1, 2]), torch.tensor([1.0, 0.25, 0.5]), torch.tensor([0, 2, 1])
    labels = augment.mixed_labels(y, lam, partner, 4)
    assert torch.allclose(labels, torch.tensor([[1.0, 0, 0, 0], [0, 0.25, 0.75, 0], [0, 0.5, 0.5, 0]]))
    logits = torch.randn(3, 4)
    by_hand = (lam * F.cross_entropy(logits, y, reduction="none")
               + (1 - lam) * F.cross_entropy(logits, y[partner], reduction="none")).mean()
    assert torch.allclose(F.cross_entropy(logits, labels), by_hand)
    teacher_logits = torch.randn(3, 4)
    assert torch.allclose(losses.kd_loss(logits, teacher_logits, labels, temperature=1, alpha=0), by_hand)


def test_mixup_shows_teacher_and_student_the_same_blends_and_mixup_loss_trains():
    seen = {}
    mp.seed_everything(1)
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    loss_fn = mp.distill_loss(Record(seen, "teacher"), mp.KDConfig(alpha=0.5, mixup=1.0))
    loss, logits = loss_fn(Record(seen, "student"), x, y)
    assert torch.equal(seen["teacher"], seen["student"]) and not torch.equal(seen["student"], x)
    assert logits.shape == (8, 3) and loss.item() > 0
    student = Record(seen, "student")
    loss, _ = augment.mixup_loss(0.4)(student, x, y)
    loss.backward()
    assert student.lin.weight.grad.abs().sum() > 0 and not torch.equal(seen["student"], x)


@pytest.mark.parametrize("max_shift, mixup", [(0, 0.0), (1, 0.0), (0, 0.5), (2, 1.0)])
def test_labels_loss_is_shifts_then_mixup_on_the_labels(max_shift, mixup):
    x, y, model = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,)), Record({}, "student")
    mp.seed_everything(2)
    loss, _ = augment.labels_loss(max_shift, mixup)(model, x, y)
    mp.seed_everything(2)
    by_hand = augment.mixup_loss(mixup) if mixup else mp.train.cross_entropy_loss
    expected, _ = augment.with_shifts(by_hand, max_shift)(model, x, y)
    assert torch.equal(loss, expected)


def test_building_an_augmented_loss_draws_no_random_numbers():
    teacher = _tiny_cnn()
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    augment.labels_loss(2, 1.0)
    augment.with_shifts(mp.train.cross_entropy_loss, 1)
    mp.distill_loss(teacher, mp.KDConfig(mixup=0.5))
    assert torch.equal(torch.rand(4), expected)  # seeded training starts from the same stream either way


@pytest.mark.parametrize("bad", [0, -1.0, "1", True])
def test_mixup_rejects_bad_strengths_before_training(bad):
    with pytest.raises(ValueError, match="mixup strength"):
        augment.mix_images(torch.zeros(2, 3), bad)
    with pytest.raises(ValueError, match="mixup strength"):
        augment.mixup_loss(bad)
    if bad:  # 0 means "no mixup" for KDConfig
        with pytest.raises(ValueError, match="mixup strength"):
            mp.KDConfig(mixup=bad)


def test_shift_trained_teacher_is_trained_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("MINPRUNE_CACHE", str(tmp_path))
    first = mp.shift_trained_teacher("lenet300", epochs=1, max_shift=1)
    files = list(tmp_path.glob("*shift1*teacher.pt"))
    assert len(files) == 1
    again = mp.shift_trained_teacher("lenet300", epochs=1, max_shift=1)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="max_shift"):
        mp.shift_trained_teacher("lenet300", epochs=1, max_shift=-1)


# ---- KDConfig and distill_student's options ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0}, "temperature must be a number > 0"), ({"temperature": "4"}, "temperature must be"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"), ({"alpha": -0.1}, "alpha must be"),
    ({"beta": -1}, "beta must be a number >= 0"), ({"max_shift": -1}, r"max_shift must be an int >= 0 \(pixels\)"),
    ({"max_shift": 1.5}, "max_shift"), ({"max_shift": True}, "max_shift"),
    ({"mixup": -1.0}, "mixup strength must be a number > 0"), ({"mixup": True}, "mixup strength")])
def test_kd_config_refuses_bad_settings_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mp.KDConfig(**kwargs)


def test_kd_config_defaults_are_frozen_and_hints_are_copied():
    assert mp.KDConfig() == mp.KDConfig(temperature=4.0, alpha=0.9, hints=None, beta=10.0, max_shift=0, mixup=0.0)
    hints = ["features.2"]
    kd = mp.KDConfig(hints=hints)
    hints.append("features.5")
    assert kd.hints == ("features.2",)
    assert mp.KDConfig(hints={"a": "b"}).hints == {"a": "b"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        kd.alpha = 0.5


def test_distill_loss_with_max_shift_is_with_shifts_around_it():
    teacher, x, y = _tiny_cnn(), torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    student = mp.build("lenet5", channels=[3, 8])
    mp.seed_everything(3)
    loss, _ = mp.distill_loss(teacher, mp.KDConfig(alpha=0.5, max_shift=2, mixup=1.0))(student, x, y)
    mp.seed_everything(3)
    by_hand = augment.with_shifts(mp.distill_loss(teacher, mp.KDConfig(alpha=0.5, mixup=1.0)), 2)
    assert torch.equal(loss, by_hand(student, x, y)[0])
    with pytest.raises(TypeError, match="kd must be a KDConfig"):
        mp.distill_loss(teacher, {"alpha": 0.5})


def _random_loader(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    data = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(data, batch_size=16)


def _student_and_teacher():
    mp.seed_everything(0)
    return mp.build("lenet300", hidden=(20, 10)), mp.build("lenet300")


def test_distill_student_is_fit_on_the_distillation_loss():
    kd, train = mp.KDConfig(temperature=2.0, alpha=0.5, max_shift=1, mixup=1.0), mp.TrainConfig(epochs=2, lr=3e-3)
    student, teacher = _student_and_teacher()
    twin = copy.deepcopy(student)
    mp.seed_everything(1)
    history = mp.distill_student(student, teacher, _random_loader(), kd, train, progress=False, device="cpu")
    mp.seed_everything(1)
    expected = mp.fit(twin, _random_loader(), train, loss_fn=mp.distill_loss(teacher, kd), progress=False,
                      device="cpu")
    assert history.train_loss == expected.train_loss
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), twin.state_dict().values()))


def test_distill_student_trains_three_epochs_at_1e_3_by_default():
    student, teacher = _student_and_teacher()
    twin = copy.deepcopy(student)
    mp.seed_everything(1)
    history = mp.distill_student(student, teacher, _random_loader(), progress=False)
    mp.seed_everything(1)
    mp.distill_student(twin, teacher, _random_loader(), mp.KDConfig(), mp.TrainConfig(epochs=3, lr=1e-3),
                       progress=False)
    assert history.epoch == [1, 2, 3]
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), twin.state_dict().values()))


def test_distill_student_passes_val_loader_and_callbacks_on_to_fit():
    class CountSteps:
        steps, epochs = 0, 0

        def on_step_end(self, model, step):
            self.steps = step

        def on_epoch_end(self, model, epoch, history):
            self.epochs = epoch

    student, teacher = _student_and_teacher()
    counter = CountSteps()
    history = mp.distill_student(student, teacher, _random_loader(), train=mp.TrainConfig(epochs=2),
                                 val_loader=_random_loader(32, seed=1), callbacks=[counter], progress=False)
    assert len(history.val_acc) == len(history.val_loss) == 2
    assert (counter.steps, counter.epochs) == (2 * 4, 2)  # 64 images in batches of 16, two epochs


@pytest.mark.parametrize("options, error, message", [
    ({"loss_fn": mp.train.cross_entropy_loss}, TypeError, "sets fit's loss_fn itself"),
    ({"epochs": 2}, TypeError, r"unknown option\(s\) \['epochs'\]"),
    ({"temperature": 4.0, "mixup": 1.0}, TypeError, r"\['mixup', 'temperature'\].*kd=KDConfig"),
    ({"kd": {"alpha": 0.5}}, TypeError, "kd must be a KDConfig"),
    ({"train": 3}, TypeError, "train must be a TrainConfig"),
])
def test_distill_student_refuses_bad_options_before_training(options, error, message):
    student, teacher = _student_and_teacher()
    state, teacher_state = copy.deepcopy(student.state_dict()), copy.deepcopy(teacher.state_dict())
    with pytest.raises(error, match=message):
        mp.distill_student(student, teacher, _random_loader(), progress=False, **options)
    assert all(torch.equal(state[k], v) for k, v in student.state_dict().items())
    assert all(torch.equal(teacher_state[k], v) for k, v in teacher.state_dict().items())
