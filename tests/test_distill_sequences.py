"""Distillation for sequence models (CharGPT) and transformer hidden states: the per-position Hinton loss against
its closed form on flattened tensors, hidden-state hints, and distill_student on CharGPT pairs."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.distillation import losses

VOCAB = 103  # pydoc-text's characters, CharGPT's default vocabulary


def gpt(n_layer=2, n_embd=32, n_head=4, seed=0, **kwargs):
    torch.manual_seed(seed)
    return mp.build("chargpt", n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=16, **kwargs)


def text_loader(batches=2):
    return mp.load("pydoc-text").loader("train", 16, 8, max_batches=batches)


def ids_loader(high=VOCAB, n=8, t=16):
    """Token ids that include `high - 1`, so a teacher with a smaller vocabulary cannot read them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, high, (n, t), generator=g)
    x[0, 0] = high - 1
    return DataLoader(TensorDataset(x, torch.randint(0, high, (n, t), generator=g)), batch_size=4)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(model, before):
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def closed_form_kd(s, t, y, temperature, alpha):
    """The Hinton loss on (N, classes) logits by hand: KL summed over classes, averaged over the N rows."""
    log_ps, log_pt = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean()
    ce = -F.log_softmax(s, -1).gather(-1, y[:, None]).mean()
    return alpha * temperature**2 * kl + (1 - alpha) * ce


# ---- kd_loss per position ------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 4), t=st.integers(1, 6), classes=st.integers(2, 9),
       temperature=st.floats(0.5, 8), alpha=st.floats(0, 1))
def test_sequence_kd_loss_is_the_closed_form_on_flattened_positions(seed, batch, t, classes, temperature, alpha):
    g = torch.Generator().manual_seed(seed)
    s, te = torch.randn(batch, t, classes, generator=g, dtype=torch.float64) * 3, torch.randn(
        batch, t, classes, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, classes, (batch, t), generator=g)
    got = losses.kd_loss(s, te, y, temperature=temperature, alpha=alpha)
    flat = (s.reshape(-1, classes), te.reshape(-1, classes), y.reshape(-1))
    assert torch.allclose(got, closed_form_kd(*flat, temperature, alpha), atol=1e-12)
    assert torch.allclose(got, losses.kd_loss(*flat, temperature=temperature, alpha=alpha), atol=1e-12)


def test_sequence_kd_loss_is_a_mean_per_position_not_per_sequence():
    g = torch.Generator().manual_seed(1)
    s, t, y = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5))
    one = losses.kd_loss(s, t, y, temperature=2.0, alpha=1.0)
    longer = losses.kd_loss(s.repeat(1, 3, 1), t.repeat(1, 3, 1), y.repeat(1, 3), temperature=2.0, alpha=1.0)
    assert torch.allclose(one, longer, atol=1e-6)  # three times the positions, the same mean
    by_hand = sum(F.kl_div(F.log_softmax(s[i, j] / 2, -1), F.log_softmax(t[i, j] / 2, -1), reduction="sum",
                           log_target=True) for i in range(2) for j in range(5)) / 10 * 4
    assert torch.allclose(one, by_hand, atol=1e-5)


def test_sequence_kd_loss_takes_probability_targets_and_refuses_other_shapes():
    g = torch.Generator().manual_seed(2)
    s, t, y = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g), torch.randint(0, 4, (2, 3))
    one_hot = F.one_hot(y, 4).float()
    assert torch.allclose(losses.kd_loss(s, t, one_hot, alpha=0.3), losses.kd_loss(s, t, y, alpha=0.3), atol=1e-6)
    with pytest.raises(ValueError, match=r"y must hold class indices of shape \(2, 3\).*got shape \(2,\)"):
        losses.kd_loss(s, t, y[:, 0])
    with pytest.raises(ValueError, match="differ in shape"):
        losses.kd_loss(s, t[:, :2], y)


def test_classifier_kd_loss_is_unchanged():
    g = torch.Generator().manual_seed(3)
    s, t, y = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g), torch.randint(0, 5, (6,))
    assert torch.allclose(losses.kd_loss(s, t, y), closed_form_kd(s, t, y, 4.0, 0.9), atol=1e-6)


# ---- hidden-state hints --------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100))
def test_hidden_state_loss_is_mse_over_teacher_variance(seed, scale):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(2, 5, 8, generator=g, dtype=torch.float64), torch.randn(2, 5, 8, generator=g,
                                                                               dtype=torch.float64)
    expected = ((s - t) ** 2).mean() / ((t - t.mean()) ** 2).mean()
    got = losses.hint_loss(s, t)  # 3-D: dispatched to hidden_state_loss
    assert torch.allclose(got, expected, rtol=1e-12)
    assert torch.allclose(losses.hint_loss(s * scale, t * scale), got, rtol=1e-9)  # the scale drops out
    assert losses.hint_loss(t.clone(), t).item() == 0
    assert losses.hint_loss(torch.full_like(t, float(t.mean())), t).item() == pytest.approx(1.0)


def test_hidden_state_hint_trains_only_the_student():
    s, t = torch.randn(2, 5, 8, requires_grad=True), torch.randn(2, 5, 8, requires_grad=True)
    losses.hint_loss(s, t).backward()
    assert s.grad is not None and t.grad is None


def test_feature_map_hints_keep_attention_transfer():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 6, 4, 4)
    by_hand = (F.normalize(s.pow(2).mean(1).flatten(1), dim=1)
               - F.normalize(t.pow(2).mean(1).flatten(1), dim=1)).pow(2).sum(1).mean()
    assert torch.allclose(losses.hint_loss(s, t), by_hand)


@pytest.mark.parametrize("s_shape, t_shape, match", [
    ((2, 5, 16), (2, 5, 32), "the same width: the student's is 16, the teacher's 32"),
    ((2, 5, 16), (2, 4, 16), "same batch and tokens"),
    ((2, 5, 16), (2, 4, 4, 4), "of the same rank"),
    ((2, 16), (2, 16), "of the same rank")])
def test_hints_of_other_widths_or_ranks_are_refused(s_shape, t_shape, match):
    with pytest.raises(ValueError, match=match):
        losses.hint_loss(torch.randn(s_shape), torch.randn(t_shape))


def _block_outputs(model, x, names):
    out, modules = {}, dict(model.named_modules())
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o)) for n in names]
    model(x)
    for h in handles:
        h.remove()
    return out


def test_depth_pruned_chargpt_learns_a_teacher_block_by_hint():
    teacher, student = gpt(n_layer=4, seed=0), gpt(n_layer=2, seed=1)
    x, y = next(iter(text_loader(1)))
    plain = mp.distill_loss(teacher, mp.KDConfig(temperature=2.0, alpha=0.5))
    hinted = mp.distill_loss(teacher, mp.KDConfig(temperature=2.0, alpha=0.5, hints={"blocks.1": "blocks.3"},
                                                  beta=3.0))
    loss, logits = hinted(student, x, y)
    assert logits.shape == (8, 16, VOCAB)
    with torch.no_grad():
        teacher.eval()
        t_out = _block_outputs(teacher, x, ["blocks.3"])["blocks.3"]
        s_out = _block_outputs(student, x, ["blocks.1"])["blocks.1"]
    expected = plain(student, x, y)[0] + 3.0 * losses.hidden_state_loss(s_out, t_out)
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert student.blocks[0].attn.q.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_tinyvit_hidden_states_hint_by_rank():
    torch.manual_seed(0)
    teacher, student = (mp.build("tinyvit", dim=32, depth=d, heads=4) for d in (2, 1))
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    loss, logits = mp.distill_loss(teacher, mp.KDConfig(hints={"blocks.0": "blocks.1"}))(student, x, y)
    assert logits.shape == (4, 10) and torch.isfinite(loss) and loss > mp.kd_loss(logits, teacher.eval()(x), y)


# ---- distill_student on CharGPT pairs ------------------------------------------------------------------------

def test_distill_student_trains_a_narrower_shallower_chargpt_like_fit():
    teacher, student = gpt(n_layer=2, n_embd=32), gpt(n_layer=1, n_embd=16, n_head=2, seed=1)
    twin, teacher_before = copy.deepcopy(student), state(teacher)
    kd, train = mp.KDConfig(temperature=2.0, alpha=0.5), mp.TrainConfig(epochs=2, lr=3e-3)
    history = mp.distill_student(student, teacher, text_loader(), kd, train, progress=False, device="cpu")
    expected = mp.fit(twin, text_loader(), train, loss_fn=mp.distill_loss(teacher, kd), progress=False, device="cpu")
    assert history.train_loss == expected.train_loss and len(history.epoch) == 2
    assert history.train_loss[1] < history.train_loss[0]
    assert same(student, state(twin)) and same(teacher, teacher_before)


def test_distill_student_with_a_hidden_state_hint_trains_the_depth_pruned_student():
    teacher, student = gpt(n_layer=4), gpt(n_layer=2, seed=1)
    kd = mp.KDConfig(alpha=0.5, hints={"blocks.1": "blocks.3"}, beta=1.0)
    history = mp.distill_student(student, teacher, text_loader(), kd, mp.TrainConfig(epochs=2, lr=3e-3),
                                 progress=False, device="cpu")
    assert history.train_loss[1] < history.train_loss[0]


def _refused(call, models, error, match):
    befores = [(m, state(m), m.training) for m in models]
    with pytest.raises(error, match=match):
        call()
    assert all(same(m, before) and m.training == flag for m, before, flag in befores)


def test_a_teacher_with_a_larger_vocabulary_is_refused_before_training():
    student, teacher = gpt(), gpt(vocab_size=120)
    _refused(lambda: mp.distill_student(student, teacher, text_loader(), progress=False, device="cpu"),
             (student, teacher), ValueError, r"the teacher has 120 outputs but the student 103.*same vocabulary")


def test_a_teacher_with_a_smaller_vocabulary_is_refused_before_training():
    student, teacher = gpt(), gpt(vocab_size=50)
    _refused(lambda: mp.distill_student(student, teacher, ids_loader(), progress=False, device="cpu"),
             (student, teacher), ValueError, r"through the teacher.*vocabulary of 50 tokens")


def test_hints_between_blocks_of_other_widths_are_refused_naming_both():
    student, teacher = gpt(n_layer=2, n_embd=16, n_head=2), gpt(n_layer=4, n_embd=32)
    student.eval()
    kd = mp.KDConfig(hints={"blocks.1": "blocks.3"})
    _refused(lambda: mp.distill_student(student, teacher, text_loader(), kd, progress=False, device="cpu"),
             (student, teacher), ValueError,
             r"hint 'blocks.1' \(student\) -> 'blocks.3' \(teacher\): .*student's is 16, the teacher's 32")
    assert not student.training


@pytest.mark.parametrize("kd, match", [(mp.KDConfig(max_shift=1), r"max_shift=1\) shifts images"),
                                       (mp.KDConfig(mixup=1.0), r"mixup=1.0\) blends inputs.*torch.int64")])
def test_image_augmentation_of_token_ids_is_refused_before_training(kd, match):
    student, teacher = gpt(n_layer=1), gpt()
    _refused(lambda: mp.distill_student(student, teacher, text_loader(), kd, progress=False, device="cpu"),
             (student, teacher), ValueError, match)


def test_distilled_chargpt_saves_and_loads_back(tmp_path):
    teacher, student = gpt(), gpt(n_layer=1, n_embd=16, n_head=2, seed=1)
    mp.distill_student(student, teacher, text_loader(1), train=mp.TrainConfig(epochs=1), progress=False,
                       device="cpu")
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "s.pt", student))
    x = next(iter(text_loader(1)))[0]
    assert torch.equal(loaded.eval()(x), student.eval()(x))


def test_a_hint_module_that_never_runs_is_refused_before_training():
    student, teacher = gpt(n_layer=1), gpt()
    student.spare = torch.nn.Linear(32, 32)  # registered, never called by forward
    teacher.spare = torch.nn.Linear(32, 32)
    _refused(lambda: mp.distill_student(student, teacher, text_loader(), mp.KDConfig(hints=["spare"]),
                                        progress=False, device="cpu"),
             (student, teacher), ValueError, "'spare' \\(teacher\\): the module did not run in the forward pass")
