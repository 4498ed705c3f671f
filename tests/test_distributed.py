"""Two CPU processes on the gloo backend: masks identical across ranks, pruned weights zero after DDP steps."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as torch_mp
from torch.nn.parallel import DistributedDataParallel

import minprune as mp
from minprune.masked import get_masks
from minprune.unstructured import distributed
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import random_scores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = mp.build("lenet300")
    prune(model, random_scores(model, seed=rank), 0.8)  # rank-dependent masks on purpose
    agreed_before = distributed.masks_agree(model)
    distributed.broadcast_masks(model, src=0)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    g = torch.Generator().manual_seed(100 + rank)  # every rank sees different data
    for _ in range(3):
        x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    masks = get_masks(model)
    pruned_nonzero = sum(int(torch.count_nonzero(mp.effective_parameters(model)[n][~m]))
                         for n, m in masks.items())
    weights = torch.cat([p.detach().flatten() for p in mp.effective_parameters(model).values()])
    results[rank] = (agreed_before, distributed.masks_agree(model), distributed.masks_digest(model),
                     pruned_nonzero, weights)
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_keeps_masks_identical_and_pruned_weights_zero():
    manager = torch_mp.Manager()
    results = manager.dict()
    torch_mp.spawn(_worker, args=(2, _free_port(), results), nprocs=2, join=True)
    (before0, after0, digest0, zeros0, w0), (before1, after1, digest1, zeros1, w1) = results[0], results[1]
    assert not before0 and not before1  # random scores differed per rank ...
    assert after0 and after1 and digest0 == digest1  # ... until rank 0's masks were broadcast
    assert zeros0 == zeros1 == 0  # pruned weights stayed exactly zero through all-reduced SGD steps
    assert torch.equal(w0, w1)  # and DDP kept the replicas identical


def test_helpers_refuse_without_process_group():
    model = mp.build("lenet300")
    with pytest.raises(RuntimeError, match="init_process_group"):
        distributed.broadcast_masks(model)
    assert len(distributed.masks_digest(model)) == 64
