"""bench/transformers.py: the recipes it measures (on small untrained models) and the tables it writes (on rows
built here, so every figure in them can be checked by hand)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import minprune as mp

_SPEC = importlib.util.spec_from_file_location(
    "bench_transformers", Path(__file__).resolve().parent.parent / "bench" / "transformers.py")
B = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(B)


def text_batches(vocab=20, t=16, n=2):
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(vocab, (4, t), generator=g), torch.randint(vocab, (4, t), generator=g)) for _ in range(n)]


def test_prune_gpt_drops_a_block_and_half_the_neurons():
    torch.manual_seed(0)
    gpt = mp.build("chargpt", vocab_size=20, block_size=16, n_layer=4, n_head=2, n_embd=32).eval()
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    student, dropped = B.prune_gpt(gpt, text_batches())
    assert len(dropped) == 1 and len(student.blocks) == 3
    assert all(b.mlp.fc1.out_features == 64 for b in student.blocks)  # 4 * 32 hidden, half kept
    assert student.tok_emb.embedding_dim == 32  # the residual width stays
    assert all(torch.equal(before[k], v) for k, v in gpt.state_dict().items())  # the teacher is untouched
    x = text_batches()[0][0]
    assert student(x).shape == gpt(x).shape  # each step's equivalence to its masked model: the library's tests


def test_half_vit_halves_heads_and_neurons():
    torch.manual_seed(0)
    vit = mp.build("tinyvit", dim=32, depth=2, heads=4).eval()
    small = B.half_vit(vit)
    hidden = vit.blocks[0].mlp.fc1.out_features
    assert all(b.attn.heads == 2 and b.mlp.fc1.out_features == hidden // 2 for b in small.blocks)
    assert mp.count_params(small) < 0.6 * mp.count_params(vit)


def rows_for(model, accs, params=100, macs=1000):
    return [{"seed": s, "model": model, "params": params, "macs": macs, "acc_before_ft": 90.0, "acc_ft": a}
            for s, a in enumerate(accs)]


def test_vit_summary_and_targets_by_hand():
    rows = (rows_for("dense", [91.0, 92.0, 93.0]) + rows_for("50% heads + 50% neurons", [90.0, 91.0, 92.0], 50, 500)
            + rows_for("EViT keep 0.5 after [1, 2]", [89.0, 89.0, 89.0], 100, 650))
    speed = {1: {"dense": 1.0, "50% heads + 50% neurons": 1.5, "EViT keep 0.5 after [1, 2]": 0.9},
             2: {"dense": 1.0, "50% heads + 50% neurons": 1.8, "EViT keep 0.5 after [1, 2]": 1.1}}
    table = {r["model"]: r for r in B.vit_summary(rows, speed)}
    half = table["50% heads + 50% neurons"]
    assert half["macs_ratio"] == 2.0 and half["macs_removed"] == 0.5
    assert half["acc_ft_mean"] == 91.0 and half["acc_ft_std"] == 1.0
    assert half["drop_vs_shipped"] == -1.0 and half["drop_vs_dense_ft"] == 1.0
    assert table["EViT keep 0.5 after [1, 2]"]["macs_removed"] == pytest.approx(0.35)
    gpt = [{"gap_closed": g, "params_student": 50, "params_teacher": 100} for g in (0.4, 0.6)]
    targets = B.targets(list(table.values()), gpt)
    assert targets[0]["values"]["vs dense fine-tuned as long"] == 1.0
    assert targets[1]["values"]["MACs removed"] == pytest.approx(0.35)
    assert targets[-1]["values"]["gap closed (mean)"] == pytest.approx(0.5)
    assert targets[-1]["values"]["std"] == pytest.approx(math.sqrt(0.02))


def test_markdown_has_every_section():
    rows = rows_for("dense", [91.0]) + rows_for("50% heads + 50% neurons", [90.0], 50, 500)
    speed = {1: {"dense": 1.0, "50% heads + 50% neurons": 1.5}, 2: {"dense": 1.0, "50% heads + 50% neurons": 1.8}}
    vit = B.vit_summary(rows, speed)
    gpt = [{"seed": 0, "params_teacher": 100, "params_student": 55, "ppl_teacher": 3.3, "ppl_pruned": 20.0,
            "ppl_alone": 3.5, "ppl_distilled": 3.4, "gap_closed": 0.5}]
    tp = [{"method": "dense", "params": 100, "macs": 1000, "latency_ms": 2.0, "speedup": 1.0, "acc": 90.0,
           "heads_differ": None, "neurons_differ": None}]
    report = {"meta": {"torch": "x"}, "gpt_dropped_blocks": [1], "vit": vit, "gpt_seeds": gpt,
              "gpt": B.gpt_summary(gpt), "torch_pruning": tp, "targets": B.targets(vit, gpt)}
    md = B.to_markdown(report)
    for heading in ("## TinyViT", "## CharGPT", "## Side by side with Torch-Pruning", "## Targets"):
        assert heading in md
    assert "| 50% heads + 50% neurons | 50 | 500 | 0.500 | 2.000 | 1.500 | 1.800 |" in md
    assert "gap closed (mean) 0.500" in md
