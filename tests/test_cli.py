"""The command line: `run RECIPE` end to end on a tiny recipe, `--help`, exit codes, no tracebacks."""

import json
import subprocess
import sys

import pytest

from minprune.__main__ import EXIT_USER_ERROR, main

TINY = """
name = "cli-test"
[base]
arch = "lenet300"
source = "train"
epochs = 1
[prune]
method = "weight"
sparsity = 0.5
[finetune]
epochs = 1
distill = true
[quantize]
method = "fake"
bits = 6
[measure]
repeats = 2
"""


def test_run_tiny_recipe_end_to_end(tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY)
    out = tmp_path / "report"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "distilled" in printed and "fake-int6" in printed
    report = (out / "report.md").read_text()
    assert report.startswith("# minprune pipeline: cli-test")
    assert "| pruned (weight) |" in report and "![pareto.png](pareto.png)" in report
    results = json.loads((out / "results.json").read_text())
    assert [row["stage"] for row in results["stages"]] == ["dense", "pruned (weight)", "distilled", "fake-int6"]
    assert results["config"]["prune"]["sparsity"] == 0.5
    for image in ("pareto.png", "history.png"):
        assert (out / image).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("text, message", [
    ("[prune]\nsparsity = 1.0\n", "prune.sparsity must be in"),
    ("[prune]\nsparsty = 0.5\n", "did you mean 'sparsity'"),
    ("[prune\n", "is not valid TOML"),
])
def test_bad_recipes_exit_2_with_one_line(tmp_path, capsys, text, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--out", str(tmp_path / "o")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_missing_recipe_and_bad_out(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == EXIT_USER_ERROR
    assert "no recipe file" in capsys.readouterr().err
    recipe, blocker = tmp_path / "r.toml", tmp_path / "file"
    recipe.write_text('name = "x"\n')
    blocker.write_text("not a folder")
    assert main(["run", str(recipe), "--out", str(blocker)]) == EXIT_USER_ERROR
    assert "is not a folder" in capsys.readouterr().err


def test_help_in_a_subprocess_and_usage_errors(capsys):
    help_run = subprocess.run([sys.executable, "-m", "minprune", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0
    assert "demo" in help_run.stdout and "run" in help_run.stdout
    for argv, message in ((["frobnicate"], "invalid choice"), (["run"], "the following arguments are required")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == EXIT_USER_ERROR
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0 and "--out" in capsys.readouterr().out


def test_version(capsys):
    import minprune

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"minprune {minprune.__version__}"


def _subparsers():
    from minprune.__main__ import build_parser

    action = next(a for a in build_parser()._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("name", ["demo", "run", "export", "course"])
def test_every_subcommand_has_examples_and_every_option_a_help_text(name):
    parser = _subparsers()[name]
    assert f"python -m minprune {name}" in parser.epilog.split("examples:", 1)[1]
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"
        if action.choices:  # the allowed values are shown, by argparse's {a,b} or in the text
            text = parser.format_help()
            assert all(str(choice) in text for choice in action.choices)


def test_run_accepts_a_shipped_recipe_by_name(tmp_path, monkeypatch):
    from minprune import __main__ as cli

    def stop_after_loading(config):  # the recipe was found and validated: stop before running it
        seen.append(config)
        raise KeyboardInterrupt

    seen = []
    monkeypatch.setattr(cli, "_run_pipeline", stop_after_loading)
    assert main(["run", "tiny", "--out", str(tmp_path)]) == cli.EXIT_INTERRUPTED
    assert [c.name for c in seen] == [mp_recipe_name("tiny")]


def mp_recipe_name(name):
    import minprune as mp

    return mp.load_recipe(name).name


def test_an_unknown_recipe_name_lists_the_shipped_ones(capsys):
    assert main(["run", "no-such-recipe"]) == EXIT_USER_ERROR
    assert "lenet5-capstone" in capsys.readouterr().err


def test_demo_times_on_one_thread_unless_told_and_says_so(monkeypatch, capsys):
    import minprune as mp
    from minprune import __main__ as cli

    seen = []

    def fake_compare(models, loader, **kwargs):
        seen.append(kwargs["timing"])
        return mp.Table([{"model": name} for name in models])

    monkeypatch.setattr(cli, "pretrained", lambda arch, retrain=False: mp.build(arch))
    monkeypatch.setattr(cli, "compare", fake_compare)
    assert main(["demo", "--models", "lenet300", "--skip-pipeline"]) == 0
    assert main(["demo", "--models", "lenet300", "--skip-pipeline", "--threads", "2"]) == 0
    assert seen == [mp.LatencyOptions(threads=1), mp.LatencyOptions(threads=2)]
    printed = capsys.readouterr().out
    assert "batch-64 CPU latency on 1 thread(s)" in printed and "on 2 thread(s)" in printed
