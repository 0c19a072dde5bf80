"""The one console script: ``ferronn <command>`` runs the same ``main`` as ``python -m ferronn.<module>``."""

from __future__ import annotations

import importlib

import pytest
import yaml

from ferronn import cli


def test_help_lists_every_command_in_one_line(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name, (module, summary) in cli.COMMANDS.items():
        assert f"  {name}" in text and summary in text and "\n" not in summary
        assert callable(importlib.import_module(module).main)
    assert set(cli.COMMANDS) == {"train", "eval", "md", "study", "label", "active", "export", "teacher", "heldout"}


def test_unknown_command_is_one_line_and_exit_2(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown command 'trian'" in err and "train" in err


@pytest.mark.parametrize("command, module, argv, key, value", [
    ("md", "ferronn.md.__main__", ["--steps", "7", "--set", "dt_fs=0.5"], "dt_fs", 0.5),
    ("study", "ferronn.study.__main__", ["dielectric", "--set", "md.steps=9"], "md", None),
    ("active", "ferronn.active.__main__", ["--set", "md.temperatures=[42.0]", "--set", "test_data=x.xyz"], "md", None),
    ("train", "ferronn.train.__main__", ["--epochs", "3", "--set", "train.lr=0.002"], "train", None),
    ("label", "ferronn.label.__main__", ["--set", "qe.ecutwfc=33"], "qe", None),
])
def test_subcommand_and_module_print_the_same_resolved_recipe(command, module, argv, key, value, capsys):
    assert cli.main([command, *argv, "--print-config"]) == 0
    via_cli = capsys.readouterr().out
    assert importlib.import_module(module).main([*argv, "--print-config"]) == 0
    assert capsys.readouterr().out == via_cli
    recipe = yaml.safe_load(via_cli)
    if value is not None:
        assert recipe[key] == value
    checks = {"md": lambda r: r["steps"] == 7, "study": lambda r: r["md"]["steps"] == 9,
              "active": lambda r: r["md"]["temperatures"] == [42.0] and r["md"]["index"] == 1,
              "train": lambda r: r["train"]["epochs"] == 3 and r["train"]["lr"] == 0.002,
              "label": lambda r: r["qe"]["ecutwfc"] == 33.0}
    assert checks[command](recipe), recipe


def test_bad_override_through_the_cli_is_one_line(capsys):
    assert cli.main(["md", "--set", "no_such_key=1", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no_such_key" in err
