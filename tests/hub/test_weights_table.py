"""``LAVT_WEIGHTS_TABLE`` is checked when read, with the same one line for every
command; ``lavt weights fetch`` refuses a name it does not know."""

from __future__ import annotations

import dataclasses
import re

import hub_server
import pytest

from lavt.cli import main as cli_main
from lavt.errors import InputError
from lavt.hub import resolve_weights
from lavt.hub.registry import FIELD_CHECKS, WeightsEntry, all_entries

lavt_home, table = hub_server.lavt_home, hub_server.table

URL = "http://127.0.0.1:9/w.pth"  # never contacted: every table below is refused first
SHA = "ab" * 32

BAD_TABLES = [
    # (table, the entry and field the message must name)
    ([{"name": "x", "url": URL, "results": "val 70"}], "entry #0 (x): field results"),
    ([{"name": "x", "url": URL, "results": {"val": "70.1"}}], "entry #0 (x): field results"),
    ([{"name": "x", "url": URL, "results": {"val": True}}], "entry #0 (x): field results"),
    ({"name": "x", "url": URL}, "expected a list of entries, found dict"),
    (["lavt-x"], "entry #0 is a str, not an object"),
    ([{"name": "ok", "url": URL}, {"name": 3, "url": URL}], "entry #1: field name"),
    ([{"url": URL}], "entry #0: field name is missing"),
    ([{"name": "x", "url": URL, "aliases": "y"}], "entry #0 (x): field aliases"),
    ([{"name": "x", "url": URL, "sha256": 12}], "entry #0 (x): field sha256"),
    ([{"name": "x", "url": URL, "sha256": "abc"}], "entry #0 (x): field sha256"),
    ([{"name": "x", "url": "ftp://h/w.pth"}], "entry #0 (x): field url"),
    ([{"name": "x", "url": URL, "kind": "bert"}], "entry #0 (x): field kind"),
    ([{"name": "x", "url": URL, "filename": "../w.pth"}], "entry #0 (x): field filename"),
    ([{"name": "x", "url": URL, "variant": None}], "entry #0 (x): field variant"),
    ([{"name": "x", "url": URL, "table": "t"}], "entry #0 (x): unknown field table"),
    ([{"name": "x"}], "entry #0 (x): needs one of the fields url, gdrive_id, hf_repo, page"),
    ([{"name": "x", "url": URL, "task": "audio"}], "entry #0 (x): field task"),
    ([{"name": "x", "page": "cloud.tsinghua.edu.cn/d/1"}], "entry #0 (x): field page"),
]


@pytest.mark.parametrize(("entries", "named"), BAD_TABLES)
def test_bad_table_is_one_line_naming_entry_and_field_for_every_command(
    entries, named, lavt_home, table, tmp_path, capsys
):
    table(entries)
    for argv in (["weights", "list"], ["weights", "fetch", "x"], ["weights", "path", "x"]):
        code = cli_main(argv)
        out, err = capsys.readouterr()
        assert code != 0 and out == "", argv
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"LAVT_WEIGHTS_TABLE {tmp_path / 'table.json'}: {named}" in err, err
    with pytest.raises(InputError, match=re.escape(named)):  # the Python API says the same
        resolve_weights("x")


def test_unreadable_or_malformed_table_is_one_line(lavt_home, tmp_path, monkeypatch, capsys):
    path = tmp_path / "t.json"
    path.write_text('[{"name": "x",')
    monkeypatch.setenv("LAVT_WEIGHTS_TABLE", str(path))
    assert cli_main(["weights", "list"]) != 0
    assert "malformed JSON" in capsys.readouterr().err
    monkeypatch.setenv("LAVT_WEIGHTS_TABLE", str(tmp_path / "missing.json"))
    assert cli_main(["weights", "list"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.json: unreadable" in err


def test_good_table_entries_are_read_with_their_defaults(lavt_home, table, capsys):
    table(
        [
            {"name": "mine", "url": URL, "sha256": SHA, "results": {"val": 70, "testA": 71.5}},
            {"name": "drive", "gdrive_id": "abc", "aliases": ["d"], "kind": "swin"},
        ]
    )
    entries = {e.name: e for e in all_entries()}
    assert entries["mine"].filename == "w.pth" and entries["mine"].kind == "lavt"
    assert entries["drive"].filename == "drive.pth" and entries["drive"].aliases == ("d",)
    assert cli_main(["weights", "list"]) == 0
    assert "val 70.00 / testA 71.50" in capsys.readouterr().out


def test_every_entry_field_is_checked():
    """A field added to WeightsEntry needs its check (``table`` is set by the reader)."""
    fields = {f.name for f in dataclasses.fields(WeightsEntry)}
    assert set(FIELD_CHECKS) == fields - {"table"}


@pytest.mark.parametrize("name", ["nosuch-name", "lavt_one-refcocco"])
def test_fetch_of_an_unknown_name_is_an_error(name, lavt_home, capsys):
    code = cli_main(["weights", "fetch", name])
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and err.count("\n") == 1
    assert f"NAME {name}: no such file, nor a registered weights name" in err
    if name == "lavt_one-refcocco":  # a near miss gets the suggestion
        assert "did you mean lavt_one-refcoco or" in err
    else:
        assert "did you mean" not in err


def test_fetch_stops_at_the_first_unknown_name(lavt_home, tmp_path, capsys):
    local = tmp_path / "mine.pth"
    local.write_bytes(b"x")
    assert cli_main(["weights", "fetch", str(local), "nosuch-name"]) != 0
    out, err = capsys.readouterr()
    assert out.strip() == str(local) and "nosuch-name" in err
