"""``hf://owner/repo/path/in/repo[@revision]`` (one file) and ``hf://owner/repo[@revision]``
(a pretrained folder: ``LAVT.save_pretrained``'s layout) through ``huggingface_hub``
(optional, ``pip install 'lavt[hub]'``); uploads for ``LAVT.push_to_hub``.

The file lands in the Hugging Face cache (``HF_HOME``), which has its own
locking and offline mode (``HF_HUB_OFFLINE=1``; ``LAVT_OFFLINE=1`` means the
same here). Files stored with Git LFS are named by their sha256 in that cache,
which is checked at every use.
"""

from __future__ import annotations

import re
from pathlib import Path

from lavt.errors import CheckpointError, InputError
from lavt.hub import cache

#: the files of a pretrained folder that a download fetches (nothing else is read)
PRETRAINED_PATTERNS = (
    "config.json",
    "model.safetensors",
    "vocab.txt",
    "tokenizer_config.json",
    "README.md",
)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


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


def parse_hf_repo(uri: str) -> tuple[str, str | None] | None:
    """``hf://owner/repo[@rev]`` -> (``owner/repo``, ``rev`` or None); None for the file form."""
    rest = uri.removeprefix("hf://").rstrip("/")
    repo, _, revision = rest.partition("@")
    if "/" in revision or not _REPO_ID.fullmatch(repo):
        return None
    if _ and not revision:
        raise CheckpointError(f"{uri}: expected hf://owner/repo@revision")
    return repo, revision or None


def is_repo_id(text: str) -> bool:
    """``owner/name`` (a Hub repository id), not a longer or relative path."""
    return _REPO_ID.fullmatch(text) is not None and not text.startswith(".")


def repo_source(source: str, revision: str | None = None) -> str:
    """``owner/repo`` (or ``hf://owner/repo``) and a revision -> ``hf://owner/repo@rev``."""
    text = source.removeprefix("hf://")
    if not _REPO_ID.fullmatch(text.partition("@")[0]):
        raise InputError(f"repo_id {source!r}: expected owner/name", param="repo_id")
    if revision is not None:
        if "@" in text:
            raise InputError(
                f"revision {revision}: {source} names a revision already", param="revision"
            )
        text = f"{text}@{revision}"
    return f"hf://{text}"


def _hub(label: str):
    """The ``huggingface_hub`` module, or one line saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            f"{label}: hf:// sources need huggingface_hub (pip install 'lavt[hub]')"
        ) from None
    return huggingface_hub


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def hf_snapshot(uri: str, *, label: str) -> Path:
    """The local folder of the repository ``hf://owner/repo[@rev]`` (its pretrained files
    only), downloaded into the Hugging Face cache if needed; the weights' sha256 checked."""
    repo_id, revision = parse_hf_repo(uri)
    hub = _hub(label)
    offline = cache.is_offline()
    try:
        local = hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(PRETRAINED_PATTERNS),
            local_files_only=offline,
        )
    except Exception as err:  # every hub error (offline, missing repo, HTTP) is one line
        why = "not in the Hugging Face cache and offline" if offline else _first_line(err)
        raise CheckpointError(
            f"{label}: repository {repo_id}" + (f" at {revision}" if revision else "") + f": {why}"
        ) from None
    folder = Path(local)
    if (folder / "model.safetensors").exists():
        _check_lfs_blob(folder / "model.safetensors", label)
    return folder


def upload_folder(
    folder: Path,
    repo_id: str,
    *,
    private: bool | None = None,
    branch: str | None = None,
    commit_message: str = "Upload LAVT model with lavt",
    token: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it in one commit (what
    ``huggingface_hub.PyTorchModelHubMixin.push_to_hub`` does); returns the commit URL."""
    repo_source(repo_id)  # the name checked before any network use
    hub = _hub(f"repo_id {repo_id}")
    try:
        api = hub.HfApi(token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        if branch is not None:
            api.create_branch(repo_id=repo_id, branch=branch, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message=commit_message,
            revision=branch,
        )
    except Exception as err:  # authentication, network, permissions: one line
        raise CheckpointError(f"repo_id {repo_id}: upload failed ({_first_line(err)})") from None
    return str(getattr(commit, "commit_url", commit))


def hf_download(uri: str, *, label: str) -> Path:
    """The local path of ``uri``, downloaded into the Hugging Face cache if needed."""
    repo_id, filename, revision = parse_hf_uri(uri)
    huggingface_hub = _hub(label)
    offline = cache.is_offline()
    try:
        local = huggingface_hub.hf_hub_download(
            repo_id, filename, revision=revision, local_files_only=offline
        )
    except Exception as err:  # every hub error (offline, missing repo or file, HTTP) is one line
        web = f"https://huggingface.co/{repo_id}/resolve/{revision or 'main'}/{filename}"
        why = "not in the Hugging Face cache and offline" if offline else _first_line(err)
        raise CheckpointError(
            f"{label}: {filename} of {repo_id}: {why}; download {web} by hand and pass "
            "its path instead"
        ) from None
    path = Path(local)
    _check_lfs_blob(path, label)
    return path


def hf_cached_path(uri: str) -> Path | None:
    """Where ``uri`` sits in the Hugging Face cache, or None when it is not there (no network);
    for ``hf://owner/repo[@rev]``, the snapshot folder holding its ``model.safetensors``."""
    repo = parse_hf_repo(uri)
    if repo is not None:
        weights = hf_cached_path(
            f"hf://{repo[0]}/model.safetensors" + (f"@{repo[1]}" if repo[1] else "")
        )
        return weights.parent if weights is not None else None
    repo_id, filename, revision = parse_hf_uri(uri)
    found = _hub(uri).try_to_load_from_cache(repo_id, filename, revision=revision)
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
