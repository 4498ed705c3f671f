import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import minprune as mp  # noqa: E402
from minprune.course import plots  # noqa: E402
from minprune.course.check import CheckFailed, same_as  # noqa: E402


def test_table_formats():
    t = mp.Table([{"name": "x", "n": 1234, "f": 0.5, "tiny": 0.001}, {"name": "y", "extra": True}], title="T")
    text = str(t)
    assert text.splitlines()[0] == "T" and "1,234" in text and "1.00e-03" in text
    assert t.columns == ["name", "n", "f", "tiny", "extra"]
    assert '"extra": true' in t.to_json()


def test_same_as_passes_and_fails(capsys):
    def mine(x):
        return x.abs()

    assert same_as(mine, torch.abs, torch.tensor([-1.0, 2.0]))
    assert "✓ mine" in capsys.readouterr().out

    def wrong(x):
        return x

    with pytest.raises(CheckFailed, match="expected") as info:
        same_as(wrong, torch.abs, torch.tensor([-1.0, 2.0]), hint="magnitudes are never negative")
    assert "hint: magnitudes" in str(info.value)

    def todo(x):
        raise NotImplementedError("Exercise 1.1")

    with pytest.raises(CheckFailed, match="not written yet"):
        same_as(todo, torch.abs, torch.ones(1))


def test_same_as_compares_structures():
    assert same_as(lambda: {"a": [1, 2.0]}, lambda: {"a": [1, 2.0]})
    with pytest.raises(CheckFailed):
        same_as(lambda: torch.ones(2), lambda: torch.ones(3))


def test_plots_return_figures():
    model = mp.build("lenet5")
    fig = plots.plot_weight_histograms(model)
    assert len([ax for ax in fig.axes if ax.has_data()]) == 5
    history = mp.History(epoch=[1, 2], train_loss=[1.0, 0.5], train_acc=[50, 80], val_loss=[1, 0.6], val_acc=[40, 70])
    assert len(plots.plot_history(history).axes) == 2
    assert len(plots.show_images(torch.zeros(3, 1, 28, 28), [1, 2, 3], ncols=3).axes) == 3
    with pytest.raises(ValueError, match="no weight"):
        plots.plot_weight_histograms(torch.nn.ReLU())


def test_same_on_reports_the_failing_case(capsys):
    from minprune.course.check import same_on

    assert same_on(abs, lambda x: x if x >= 0 else -x, [(1,), (-2,), (0,)])
    assert "on 3 cases" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="case 2 of 3"):
        same_on(lambda x: x, abs, [(1,), (-2,), (0,)])
