"""Released weights by name: the table, the download cache and integrity checks.

One entry point for the rest of the package::

    from lavt.hub import resolve_weights
    path = resolve_weights("lavt_one-refcoco")  # or a path, a URL, hf://owner/repo/file

Everything else here serves ``lavt weights`` (list, fetch, path, verify).
"""

from __future__ import annotations

from lavt.hub.resolve import resolve_weights

__all__ = ["resolve_weights"]
