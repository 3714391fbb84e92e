"""Help texts: what lavt does, and every flag of convert/synth/benchmark with its default."""

from __future__ import annotations

import re

import pytest

from lavt.cli import main


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_top_level_says_what_lavt_does(capsys):
    text = " ".join(_help(capsys).split())
    assert "segments the object that an English expression refers to" in text


SWITCHES = {
    "--compile",
    "--channels-last",
    "--grad-checkpointing",
    "--overwrite",
    "--generalized",
    "--own-data",
    "--link",
    "--video",
}
# required, or "unset" means something
NO_DEFAULT = {"--output", "--threads", "--json", "--name", "--dataset"}


@pytest.mark.parametrize("command", ["convert", "synth", "benchmark", "data import", "data check"])
def test_every_flag_has_help_and_shows_its_default(capsys, command):
    text = _help(capsys, *command.split())
    options = text.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", options)[1:]  # one entry per flag
    assert len(entries) > 1
    for entry in entries:
        flag = entry.split()[0].rstrip(",")
        if flag == "-h":
            continue
        words = " ".join(entry.split())
        assert len(words) > 2 * len(flag) + 10, f"{command} {flag}: no help"
        if flag in SWITCHES or flag in NO_DEFAULT:
            assert "(default: None)" not in words and "(default: False)" not in words
        else:
            assert "(default: " in words, f"{command} {flag}: default not shown"


@pytest.mark.parametrize(
    ("command", "alias"),
    [("benchmark", "--img_size"), ("benchmark", "--batch_size"), ("synth", "--image_size")],
)
def test_underscore_aliases_are_listed(capsys, command, alias):
    assert alias in _help(capsys, command)
