"""Shared test setup: a private model cache per session, deterministic single-process torch, and devices.

Every test runs on the CPU, on every machine (MINPRUNE_DEVICE=cpu), so that results do not depend on a GPU being
there; tests marked `@pytest.mark.cuda` run with the default rule instead (the GPU) and are skipped without CUDA.
"""

import pytest
import torch

from minprune.devices import ENV


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MINPRUNE_CACHE", str(tmp_path_factory.mktemp("model-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _device(request, monkeypatch):
    """MINPRUNE_DEVICE=cpu, except in tests marked cuda (the default rule: the GPU)."""
    if request.node.get_closest_marker("cuda"):
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, "cpu")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is False")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)
