import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import minprune as mp  # noqa: E402
from minprune.course import widgets  # noqa: E402


def _random_loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=g)
    return DataLoader(TensorDataset(x, torch.randint(0, 10, (64,), generator=g)), batch_size=32)


@pytest.fixture
def explorer():
    return widgets.SparsityExplorer(mp.build("lenet300"), _random_loader())


def test_pruned_copy_leaves_model_untouched(explorer):
    before = {k: v.clone() for k, v in explorer.model.state_dict().items()}
    twin = explorer.pruned(0.9, "magnitude", "global")
    assert mp.model_sparsity(twin) > 0.85 and mp.model_sparsity(explorer.model) == 0.0
    assert all(torch.equal(before[k], v) for k, v in explorer.model.state_dict().items())


def test_scores_are_cached(explorer):
    assert explorer.scores("random") is explorer.scores("random")


@pytest.mark.parametrize("score,scope", [("magnitude", "local"), ("random", "global"), ("taylor", "global")])
def test_figure_reports_accuracy(explorer, score, scope):
    fig = explorer.figure(0.5, score, scope)
    assert "accuracy" in fig._suptitle.get_text() and len(fig.axes) == 2


def test_widget_builds(explorer):
    box = explorer.widget(0.3)
    slider = box.children[0].children[0]
    assert slider.value == 0.3 and slider.max == 0.99


def test_bad_choices(explorer):
    with pytest.raises(ValueError, match="unknown weight score 'l1'; choose one of magnitude, random, taylor, snip"):
        explorer.scores("l1")
    with pytest.raises(ValueError, match="scope"):
        explorer.pruned(0.5, "magnitude", "everywhere")
    with pytest.raises(ValueError, match="unknown layer"):
        widgets.SparsityExplorer(explorer.model, explorer.loader, layer="nope")


@pytest.fixture
def channels():
    return widgets.ChannelExplorer(mp.build("vgg"), _random_loader())


def test_channel_explorer_prunes_a_smaller_copy(channels):
    before = {k: v.clone() for k, v in channels.model.state_dict().items()}
    small = channels.pruned(0.5, "l1", "local")
    kept = channels.kept_channels(small)
    assert kept["features.0.0"] == (8, 16) and kept["features.7.0"] == (32, 64)  # every group halved
    assert mp.count_macs(small) < 0.3 * channels.dense_macs
    assert all(torch.equal(before[k], v) for k, v in channels.model.state_dict().items())


@pytest.mark.parametrize("score,scope", [("l1", "local"), ("l2", "global"), ("bn", "global"),
                                         ("random", "local"), ("taylor", "global")])
def test_channel_figure_shows_accuracy_macs_and_bars(channels, score, scope):
    fig = channels.figure(0.5, score, scope)
    title = fig._suptitle.get_text()
    assert "accuracy" in title and "fewer MACs" in title
    bars = fig.axes[0].patches  # one grey bar (before) and one green bar (kept) per prunable layer
    assert len(bars) == 2 * len(channels.layers)


def test_channel_widget_builds_and_bad_choices(channels):
    slider, score, scope = channels.widget(0.25).children[0].children
    assert slider.value == 0.25 and scope.value == "local"
    assert score.value == "l1" and dict(score.options) == {"L1": "l1", "L2": "l2", "BN scale": "bn",
                                                            "taylor": "taylor", "random": "random"}
    with pytest.raises(ValueError, match="unknown unit score 'snip'; choose one of l1, l2, bn, taylor, random"):
        channels.scores("snip")
    with pytest.raises(ValueError, match="scope must be one of"):
        channels.pruned(0.5, "l1", "everywhere")
    with pytest.raises(ValueError, match="sparsity"):
        channels.pruned(1.0)


def test_channel_explorer_static_snapshot_outside_a_kernel(channels):
    explorer = widgets.channel_explorer(channels.model, channels.loader, sparsity=0.25)
    assert isinstance(explorer, widgets.ChannelExplorer)
