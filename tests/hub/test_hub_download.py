"""Downloads into the weights cache from a local HTTP server: resume, lock, checksums,
Google Drive's confirmation page, offline and unreachable sources, hand-placed files."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import hub_server
import pytest

from lavt.errors import CheckpointError
from lavt.hub import cache, resolve_weights

# the local HTTP server and an empty cache (fixtures)
server, lavt_home, table = hub_server.server, hub_server.lavt_home, hub_server.table

SRC = Path(__file__).resolve().parents[2] / "src"


def _blob(n: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed * 7 + i // 251) % 256 for i in range(n))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(home: Path) -> list[str]:
    """Files in the cache other than locks."""
    root = home / "weights"
    return sorted(p.name for p in root.rglob("*") if p.is_file() and ".lock" not in p.name)


def test_url_downloads_once_and_records_its_checksum(server, lavt_home):
    server.files["a.bin"] = data = _blob(200_000)
    url = f"{server.url}/files/a.bin"
    path = resolve_weights(url)
    assert path.read_bytes() == data and path.name == "a.bin"
    assert path.is_relative_to(lavt_home)
    assert cache.read_sidecar(path)["sha256"] == _sha(data)
    assert resolve_weights(url) == path  # from the cache: no second request
    assert server.hits_for("/files/a.bin") == [None]
    assert _leftovers(lavt_home) == ["a.bin", "a.bin.json"]


def test_cut_connection_is_resumed_with_a_range_request(server, lavt_home):
    server.files["b.bin"] = data = _blob(300_000, seed=1)
    path = resolve_weights(f"{server.url}/cut/b.bin")
    assert path.read_bytes() == data
    assert server.hits_for("/cut/b.bin") == [None, f"bytes={len(data) // 2}-"]


def test_interrupted_download_keeps_its_part_and_the_next_call_resumes(
    server, lavt_home, monkeypatch
):
    server.files["c.bin"] = data = _blob(300_000, seed=2)
    url = f"{server.url}/cut/c.bin"
    monkeypatch.setenv("LAVT_DOWNLOAD_RETRIES", "0")
    with pytest.raises(CheckpointError, match=r"interrupted.*run again to resume") as err:
        resolve_weights(url)
    assert "\n" not in str(err.value)
    dest = cache.url_cache_path(url)
    assert not dest.exists()
    assert cache.part_path(dest).stat().st_size == len(data) // 2
    assert resolve_weights(url).read_bytes() == data
    assert server.hits_for("/cut/c.bin") == [None, f"bytes={len(data) // 2}-"]
    assert not cache.part_path(dest).exists()


def test_file_changed_upstream_between_attempts_is_fetched_whole(server, lavt_home, monkeypatch):
    server.files["f.bin"] = _blob(300_000, seed=10)
    url = f"{server.url}/cut/f.bin"
    monkeypatch.setenv("LAVT_DOWNLOAD_RETRIES", "0")
    with pytest.raises(CheckpointError, match="interrupted"):
        resolve_weights(url)
    server.files["f.bin"] = new = _blob(300_000, seed=11)
    assert resolve_weights(url).read_bytes() == new  # not old half + new half
    assert server.hits_for("/cut/f.bin") == [None, "bytes=150000-"]
    assert _leftovers(lavt_home) == ["f.bin", "f.bin.json"]


def test_wrong_file_is_refused_by_the_table_checksum_worded_by_its_source(server, lavt_home, table):
    server.files["wrong.pth"] = _blob(50_000, seed=3)
    expected = _sha(_blob(50_000, seed=4))
    table([{"name": "test-wrong", "url": f"{server.url}/files/wrong.pth", "sha256": expected}])
    with pytest.raises(CheckpointError, match=r"sha256 .* not .*removed") as err:
        resolve_weights("test-wrong")
    # a sha256 from the user's own table is not "published"
    assert "published" not in str(err.value)
    assert f"given in LAVT_WEIGHTS_TABLE {lavt_home.parent / 'table.json'}" in str(err.value)
    assert _leftovers(lavt_home) == []


def _damage(path: Path) -> None:
    """Flip one byte, same size, newer mtime."""
    data = bytearray(path.read_bytes())
    data[500] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))


def test_file_damaged_in_the_cache_is_removed_and_fetched_again_in_the_same_call(
    server, lavt_home, capsys
):
    from lavt.cli import main as cli_main

    server.files["d.bin"] = data = _blob(100_000, seed=5)
    url = f"{server.url}/files/d.bin"
    path = resolve_weights(url)
    _damage(path)
    assert cli_main(["weights", "fetch", url]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(path) and path.read_bytes() == data
    assert len(server.hits_for("/files/d.bin")) == 2
    said = [line for line in err.splitlines() if "corrupt" in line]
    assert len(said) == 1 and "recorded at its download" in said[0]
    assert "downloading it again" in said[0]
    assert cache.read_sidecar(path)["sha256"] == _sha(data)


def test_damaged_file_is_fetched_again_once_and_the_message_names_the_table(
    server, lavt_home, table, caplog, monkeypatch
):
    monkeypatch.setattr(logging.getLogger("lavt"), "propagate", True)  # the CLI turns it off
    server.files["t.pth"] = data = _blob(60_000, seed=12)
    table([{"name": "test-table", "url": f"{server.url}/files/t.pth", "sha256": _sha(data)}])
    path = resolve_weights("test-table")
    _damage(path)
    server.files["t.pth"] = _blob(60_000, seed=13)  # the source now serves a wrong file too
    with caplog.at_level("WARNING", logger="lavt"):
        with pytest.raises(CheckpointError, match=r"not .*given in LAVT_WEIGHTS_TABLE.*removed"):
            resolve_weights("test-table")
    assert len(server.hits_for("/files/t.pth")) == 2  # one download again, no loop
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "corrupt" in said and "given in LAVT_WEIGHTS_TABLE" in said and "published" not in said
    assert _leftovers(lavt_home) == []


def test_truncated_checkpoint_without_a_checksum_is_detected_and_removed(server, lavt_home):
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as archive:
        archive.writestr("archive/data.pkl", _blob(40_000, seed=6))
    server.files["cut.pth"] = whole.getvalue()[:-100]  # no central directory
    with pytest.raises(CheckpointError, match=r"incomplete.*zip archive is cut short.*removed"):
        resolve_weights(f"{server.url}/files/cut.pth")
    assert _leftovers(lavt_home) == []


def test_html_page_instead_of_the_file_is_refused(server, lavt_home):
    server.files["x"] = b"x"
    with pytest.raises(CheckpointError, match=r"HTML page instead of the file"):
        resolve_weights(f"{server.url}/html/x")
    assert _leftovers(lavt_home) == []


@pytest.mark.parametrize(
    ("drive_id", "requests"),
    [
        ("small", ["/uc"]),
        ("bigform", ["/uc", "/download"]),
        ("bigcookie", ["/uc", "/uc"]),
    ],
)
def test_google_drive_confirmation_page(server, lavt_home, table, monkeypatch, drive_id, requests):
    server.files[drive_id] = data = _blob(400_000, seed=7)
    monkeypatch.setenv("LAVT_GDRIVE_URL", server.url)
    table([{"name": "test-drive", "gdrive_id": drive_id, "filename": "drive.pth"}])
    path = resolve_weights("test-drive")
    assert path == lavt_home / "weights" / "drive.pth"
    assert path.read_bytes() == data
    assert [p for p, _ in server.hits] == requests


def test_google_drive_download_cut_half_way_resumes_through_the_warning_page(
    server, lavt_home, table, monkeypatch
):
    server.files["bigcut"] = data = _blob(400_000, seed=12)
    monkeypatch.setenv("LAVT_GDRIVE_URL", server.url)
    table([{"name": "test-drive", "gdrive_id": "bigcut", "filename": "drive.pth"}])
    assert resolve_weights("test-drive").read_bytes() == data
    resumed = f"bytes={len(data) // 2}-"
    assert server.hits == [
        ("/uc", None),
        ("/download", None),
        ("/uc", resumed),
        ("/download", resumed),
    ]


def test_google_drive_page_without_a_file_is_a_clear_error(server, lavt_home, table, monkeypatch):
    monkeypatch.setenv("LAVT_GDRIVE_URL", server.url + "/html")
    table([{"name": "test-drive", "gdrive_id": "gone", "filename": "drive.pth"}])
    with pytest.raises(CheckpointError, match=r"page without the file.*Quota exceeded"):
        resolve_weights("test-drive")


@pytest.mark.parametrize("var", ["LAVT_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_error_names_the_file_its_source_and_where_to_put_it(
    server, lavt_home, table, monkeypatch, var
):
    server.files["e.pth"] = _blob(1000)
    url = f"{server.url}/files/e.pth"
    table([{"name": "test-offline", "url": url, "filename": "e.pth"}])
    monkeypatch.setenv(var, "1")
    with pytest.raises(CheckpointError) as err:
        resolve_weights("test-offline")
    message = str(err.value)
    dest = lavt_home / "weights" / "e.pth"
    assert "e.pth" in message and url in message and str(dest) in message and var in message
    assert "\n" not in message and server.hits == []


def test_unreachable_host_error_says_where_to_put_the_file(lavt_home, table):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w.pth"
    table([{"name": "test-down", "url": url, "filename": "w.pth"}])
    with pytest.raises(CheckpointError, match=r"cannot reach") as err:
        resolve_weights("test-down")
    assert url in str(err.value) and str(lavt_home / "weights" / "w.pth") in str(err.value)


def test_hand_placed_copy_is_used_offline_and_checksummed(lavt_home, table, monkeypatch):
    data = _blob(5000, seed=8)
    table(
        [
            {"name": "test-hand", "url": "http://unused.invalid/h.pth", "sha256": _sha(data)},
            {"name": "test-bad", "url": "http://unused.invalid/b.pth", "sha256": _sha(b"other")},
        ]
    )
    monkeypatch.setenv("LAVT_OFFLINE", "1")
    weights = lavt_home / "weights"
    weights.mkdir(parents=True)
    (weights / "h.pth").write_bytes(data)
    (weights / "b.pth").write_bytes(data)
    assert resolve_weights("test-hand") == weights / "h.pth"
    assert cache.read_sidecar(weights / "h.pth")["sha256"] == _sha(data)
    with pytest.raises(CheckpointError, match=r"b.pth is corrupt.*replace it"):
        resolve_weights("test-bad")
    assert (weights / "b.pth").exists()  # a file placed by hand is never deleted


def test_plain_paths_pass_through_and_misspelled_names_get_suggestions(tmp_path, lavt_home):
    existing = tmp_path / "model.pth"
    existing.write_bytes(b"x")
    assert resolve_weights(existing) == existing
    missing = tmp_path / "missing.pth"
    assert resolve_weights(missing) == missing  # the caller's own "not found" error
    with pytest.raises(CheckpointError, match=r"did you mean lavt_one-refcoco") as err:
        resolve_weights("lavt_one-refcocco", param="checkpoint")
    assert err.value.message_for_cli().startswith("--checkpoint lavt_one-refcocco:")


_CHILD = """
import sys, pathlib
from lavt.hub import resolve_weights
pathlib.Path(sys.argv[2]).write_text("started")
print(resolve_weights(sys.argv[1]))
"""


@pytest.mark.slow
def test_two_processes_at_once_download_once(server, lavt_home, tmp_path):
    server.files["shared.bin"] = data = _blob(500_000, seed=9)
    url = f"{server.url}/gate/shared.bin"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    marks = [tmp_path / f"started{k}" for k in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, str(mark)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mark in marks
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(m.exists() for m in marks) and time.monotonic() < deadline:
            time.sleep(0.05)
        # without the lock, the second process's request would arrive while the first
        # one is held at the gate; give it time to do so
        settle = time.monotonic() + 2.0
        while len(server.hits_for("/gate/shared.bin")) < 2 and time.monotonic() < settle:
            time.sleep(0.05)
        server.gate.set()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert Path(paths.pop()).read_bytes() == data
    assert server.hits_for("/gate/shared.bin") == [None]
