"""``lavt weights``: the released weights by name (list, fetch, path, verify, push).

::

    lavt weights list
    lavt weights fetch lavt_one-refcoco --safetensors
    lavt weights path lavt_one-refcoco
    lavt weights verify
    lavt weights push lavt_one-refcoco me/lavt-one-refcoco --metrics eval/metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the released weights and their published results")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.add_argument(
        "--task", choices=("image", "video"), default=None, help="only weights for this task"
    )
    fetch = sub.add_parser("fetch", help="download into the cache ahead of time")
    fetch.add_argument("sources", nargs="+", metavar="NAME|URL", help="names, URLs or hf://")
    fetch.add_argument(
        "--safetensors",
        action="store_true",
        help="also keep a .safetensors copy, which later loads use (nothing unpickled)",
    )
    path = sub.add_parser("path", help="print where a name or URL is cached")
    path.add_argument("source", metavar="NAME|URL")
    verify = sub.add_parser("verify", help="re-check the sha256 of every cached file")
    verify.add_argument("--delete", action="store_true", help="remove the files that fail")
    _add_push(sub)
    parser.set_defaults(
        _flags={
            "source": "NAME",
            "sources": "NAME",
            "repo_id": "REPO_ID",
            "metrics": "--metrics",
            "dataset": "--dataset",
            "output": "--local-dir",
            "dtype": "--dtype",
            "revision": "--branch",
        }
    )


def _add_push(sub) -> None:
    from lavt.commands.shared_flags import add_storage_dtype_flag

    push = sub.add_parser(
        "push",
        help="convert a checkpoint to a Hub folder (safetensors, config, card) and upload it",
        description="Convert a released .pth, a bundled model or any checkpoint to the "
        "save_pretrained layout (config.json, model.safetensors, vocab.txt, README.md card) "
        "and upload it to a Hugging Face Hub repository (needs lavt[hub] and a token), or "
        "write it to --local-dir only.",
    )
    push.add_argument("source", metavar="NAME_OR_PATH", help="registered name, path or URL")
    push.add_argument("repo_id", metavar="REPO_ID", help="owner/name on the Hub")
    push.add_argument(
        "--metrics",
        default=None,
        help="lavt evaluate's metrics.json, shown in the card (default: none)",
    )
    push.add_argument(
        "--dataset",
        default=None,
        help="dataset the metrics were measured on, e.g. refcoco (default: the released "
        "name's, else none)",
    )
    push.add_argument(
        "--local-dir",
        default=None,
        help="write the folder here and upload nothing (default: upload)",
    )
    add_storage_dtype_flag(push)
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--branch", default=None, help="branch to commit to (default: main)")


def _results(results: dict[str, float]) -> str:
    from lavt.hub.video_weights import format_figure

    return " / ".join(format_figure(key, value) for key, value in results.items()) or "n/a"


def _list(as_json: bool, task: str | None = None) -> int:
    from lavt.assets import BUNDLED_MODELS
    from lavt.hub.registry import all_entries
    from lavt.hub.resolve import entry_path

    rows = []
    for entry in all_entries():
        if task is not None and entry.task != task:
            continue
        cached = entry.kind != "text" and entry_path(entry).exists()
        image = entry.task == "image"
        rows.append(
            {
                "name": entry.name,
                "task": entry.task,
                "variant": entry.variant,
                "data": entry.data,
                "source": entry.source,
                "download": "by hand" if entry.manual else "automatic",
                "overall_iou": (entry.results or None) if image else None,
                "mean_iou": None,
                "published": entry.results or None,
                "cached": cached,
            }
        )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    width = max((len(r["name"]) for r in rows), default=0)
    for row in rows:
        mark = "*" if row["cached"] else " "
        print(f"{mark} {row['name']:<{width}}  {row['variant']}; trained on {row['data']}")
        if row["task"] == "video":
            print(f"  {'':<{width}}  video; published: {_results(row['published'] or {})}")
        else:
            print(f"  {'':<{width}}  overall IoU: {_results(row['overall_iou'] or {})}")
        by_hand = " (download by hand: lavt weights fetch NAME says where to put it)"
        print(f"  {'':<{width}}  {row['source']}{by_hand if row['download'] == 'by hand' else ''}")
    print(
        "\n* = in the cache. Overall IoU (%) as published in the LAVT README; "
        "mean IoU: n/a. bert-base-uncased loads through the transformers cache. "
        "Video (lavt_video): Refer-YouTube-VOS J&F / J / F and A2D-Sentences oIoU / mIoU "
        "as published in the LAVT-RS README, per Video Swin backbone."
    )
    print(f"Bundled in the package (never downloaded): {', '.join(BUNDLED_MODELS)}.")
    return 0


def _fetch(sources: list[str], safetensors: bool) -> int:
    from lavt.hub import cache, resolve_weights
    from lavt.hub.registry import find_entry
    from lavt.hub.resolve import unknown_source

    for source in sources:
        entry = find_entry(source)
        if entry is not None and entry.kind == "text":
            print(_fetch_text_encoder(entry.name, entry.hf_repo or entry.name))
            continue
        path = resolve_weights(source, param="source")
        if not path.exists():  # neither a name, a URL nor a file: nothing was fetched
            raise unknown_source(f"source {source}", source, param="source")
        if safetensors and path.suffix != ".safetensors":
            from lavt.checkpoint import convert_to_safetensors

            copy = cache.safetensors_copy_path(path)
            convert_to_safetensors(path, copy)
            cache.write_sidecar(copy, cache.file_sha256(copy), f"converted from {path}")
            path = copy
        print(path)
    return 0


def _fetch_text_encoder(name: str, repo: str) -> str:
    """Download a BERT into the Hugging Face cache, where ``from_pretrained`` finds it."""
    from lavt.errors import CheckpointError

    try:
        from huggingface_hub import snapshot_download

        patterns = ["config.json", "model.safetensors", "vocab.txt", "tokenizer*.json"]
        return snapshot_download(repo, allow_patterns=patterns)
    except Exception as err:  # offline, unreachable, missing: one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{name}: cannot fetch {repo} from the Hugging Face hub ({first})"
        ) from None


def _path(source: str) -> int:
    from lavt.hub import cache
    from lavt.hub.resolve import cache_path

    if source.lower().startswith("hf://"):
        return _hf_path(source)
    path = cache_path(source)
    copy = cache.safetensors_copy_path(path)
    found = copy if copy.exists() else path
    print(found)
    if not found.exists():
        print(f"(not downloaded yet: lavt weights fetch {source})", file=sys.stderr)
        return 1
    return 0


def _hf_path(source: str) -> int:
    """The Hugging Face cache's file for an hf:// source (looked up, never downloaded)."""
    from lavt.hub.hf import hf_cached_path

    found = hf_cached_path(source)
    if found is None:
        print(f"{source}: not in the Hugging Face cache (lavt weights fetch {source})",
              file=sys.stderr)  # fmt: skip
        return 1
    print(found)
    return 0


def _verify(delete: bool) -> int:
    from lavt.hub import cache

    files = cache.cached_files()
    bad = 0
    for path in files:
        record = cache.read_sidecar(path)
        actual = cache.file_sha256(path)
        problem = cache.truncation_problem(path)
        failed = True
        if record is not None and record["sha256"] != actual:
            status = (
                f"CORRUPT: sha256 {actual[:12]}... is not the recorded {record['sha256'][:12]}..."
            )
        elif problem is not None:
            status = f"INCOMPLETE: {problem}"
        else:
            failed = False
            status = "ok"
            if record is None:
                cache.write_sidecar(path, actual, "placed by hand")
                status = "ok (placed by hand; sha256 recorded now)"
        if failed:
            bad += 1
            if delete:
                path.unlink()
                cache.sidecar_path(path).unlink(missing_ok=True)
                status += " (deleted)"
        print(f"{path}: {status}")
    print(f"{len(files)} files in {cache.weights_dir()}, {bad} bad")
    return 1 if bad else 0


def _card_info(source: str, repo_id: str, metrics: str | None, dataset: str | None):
    """What the card says: the released name's data and published figures, the metrics."""
    from lavt.errors import InputError
    from lavt.hub.card import CardInfo, read_metrics
    from lavt.hub.registry import find_entry

    entry = find_entry(source)
    published = {}
    if entry is not None and entry.kind == "lavt" and entry.task == "image":
        dataset = dataset or entry.name.split("-", 1)[1]
        published = dict(entry.results)
    elif source in ("synthetic", "synthetic-generalized"):
        dataset = dataset or "synthetic"
    measured = read_metrics(metrics) if metrics else {}
    if measured and not dataset:
        raise InputError("dataset: name the data the metrics were measured on", param="dataset")
    return CardInfo(
        dataset=dataset, metrics=measured, published=published, repo_id=repo_id, origin=source
    )


def _push(args: argparse.Namespace) -> int:
    from lavt.hub.hf import repo_source
    from lavt.modeling import LAVT

    repo_source(args.repo_id)  # a malformed name before the model loads
    card = _card_info(args.source, args.repo_id, args.metrics, args.dataset)
    model = LAVT.from_checkpoint(args.source)
    if args.local_dir is not None:
        print(model.save_pretrained(args.local_dir, card=card, dtype=args.dtype))
        return 0
    url = model.push_to_hub(
        args.repo_id, card=card, dtype=args.dtype, private=args.private or None, branch=args.branch
    )
    print(url)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "push":
        return _push(args)
    if args.action == "list":
        return _list(args.json, args.task)
    if args.action == "fetch":
        return _fetch(args.sources, args.safetensors)
    if args.action == "path":
        return _path(args.source)
    return _verify(args.delete)
