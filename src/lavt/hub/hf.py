"""``hf://owner/repo/path/in/repo[@revision]`` through ``huggingface_hub`` (optional).

The file lands in the Hugging Face cache (``HF_HOME``), which has its own
locking and offline mode (``HF_HUB_OFFLINE=1``; ``LAVT_OFFLINE=1`` means the
same here). Files stored with Git LFS are named by their sha256 in that cache,
which is checked at every use.
"""

from __future__ import annotations

from pathlib import Path

from lavt.errors import CheckpointError
from lavt.hub import cache


def parse_hf_uri(uri: str) -> tuple[str, str, str | None]:
    """``hf://owner/repo/dir/file.pth@rev`` (or ``hf://owner/repo@rev/dir/file.pth``)
    -> (``owner/repo``, ``dir/file.pth``, ``rev`` or None)."""
    rest = uri.removeprefix("hf://")
    revision = None
    parts = rest.split("/")
    if len(parts) >= 2 and "@" in parts[1]:
        parts[1], revision = parts[1].split("@", 1)
    path = "/".join(parts[2:])
    if "@" in path and revision is None:
        path, revision = path.rsplit("@", 1)
    if len(parts) < 3 or not all(parts[:2]) or not path or revision == "":
        raise CheckpointError(f"{uri}: expected hf://owner/repo/path/to/file[@revision]")
    return f"{parts[0]}/{parts[1]}", path, revision


def hf_download(uri: str, *, label: str) -> Path:
    """The local path of ``uri``, downloaded into the Hugging Face cache if needed."""
    repo_id, filename, revision = parse_hf_uri(uri)
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            f"{label}: hf:// sources need huggingface_hub (pip install 'lavt[hub]')"
        ) from None
    offline = cache.is_offline()
    try:
        local = huggingface_hub.hf_hub_download(
            repo_id, filename, revision=revision, local_files_only=offline
        )
    except Exception as err:  # every hub error (offline, missing repo or file, HTTP) is one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        web = f"https://huggingface.co/{repo_id}/resolve/{revision or 'main'}/{filename}"
        why = "not in the Hugging Face cache and offline" if offline else first
        raise CheckpointError(
            f"{label}: {filename} of {repo_id}: {why}; download {web} by hand and pass "
            "its path instead"
        ) from None
    path = Path(local)
    _check_lfs_blob(path, label)
    return path


def hf_cached_path(uri: str) -> Path | None:
    """Where ``uri`` sits in the Hugging Face cache, or None when it is not there (no network)."""
    repo_id, filename, revision = parse_hf_uri(uri)
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            f"{uri}: hf:// sources need huggingface_hub (pip install 'lavt[hub]')"
        ) from None
    found = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _check_lfs_blob(path: Path, label: str) -> None:
    """A cache entry that links to a blob named by a sha256 must hash to that name."""
    blob = path.resolve()
    name = blob.name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        actual = cache.file_sha256(blob)
        if actual != name:
            raise CheckpointError(
                f"{label}: {path} is corrupt (sha256 {actual[:12]}... is not its "
                f"recorded {name[:12]}...); delete it from the Hugging Face cache"
            )
