"""Readers of outside annotation formats for ``lavt data import`` (docs/data.md).

One module per format (:mod:`~lavt.data.formats.jsonl`, :mod:`~lavt.data.formats.coco`,
:mod:`~lavt.data.formats.labelme`), each with ``read(src, *, images, problems)``
yielding :class:`~lavt.data.formats.base.ImportRecord`; they share only
:mod:`~lavt.data.formats.base` and never import one another.
:mod:`lavt.data.importer` writes their records with the refer-layout writer.
"""
