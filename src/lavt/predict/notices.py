"""Warnings a user of the predictor should see: the model's world, [UNK] words, cut texts.

The bundled default model was trained on ``lavt synth`` scenes only (flat
shapes, a 60-word vocabulary): on a photograph, or with words it has never
seen (the tokenizer maps them to ``[UNK]``), its masks mean little. Each of
those notices is logged once per process, pointing to the released weights;
an expression cut to the model's token limit is reported every time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from lavt.tokenizer import Tokenizer

log = logging.getLogger("lavt")

RELEASED = "use the released LAVT weights (lavt weights list; docs/weights.md) for real images"
_said: set[str] = set()


def _once(key: str, message: str, *args: object) -> None:
    if key not in _said:
        _said.add(key)
        log.warning(message, *args)


def looks_like_photo(image: Image.Image, img_size: int) -> bool:
    """Much larger than the model's input, or without the flat background of a synthetic scene.

    On a 64 x 64 thumbnail with colours quantised to 8 levels a channel, a
    ``lavt synth`` scene's most common colour covers at least about a fifth of
    the pixels; a photograph's rarely covers an eighth.
    """
    if max(image.size) > 8 * img_size:
        return True
    thumb = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR)) >> 5  # (64, 64, 3)
    codes = (thumb[..., 0].astype(np.int64) << 6) | (thumb[..., 1] << 3) | thumb[..., 2]
    return np.bincount(codes.ravel()).max() / codes.size < 0.125


def notice_image(image: Image.Image, img_size: int) -> None:
    """Warn (once) that the synthetic-shapes model is looking at a photograph-like image."""
    if looks_like_photo(image, img_size):
        _once(
            "photo",
            "this image (%dx%d) looks like a photograph, but the model knows only the "
            "synthetic shapes of 'lavt synth' scenes; %s",
            image.size[0],
            image.size[1],
            RELEASED,
        )


def _unk_id(tokenizer: Tokenizer) -> int | None:
    wordpiece = getattr(tokenizer, "_tok", None)
    return None if wordpiece is None else wordpiece.token_to_id("[UNK]")


def unknown_words(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[str]]:
    """Per text, its words the model reads as ``[UNK]`` (as written, in order, repeats once).

    A word is what the tokenizer's pre-tokenizer splits off (punctuation is a
    word of its own); it is unknown when any of its word pieces is ``[UNK]``.
    """
    unk = _unk_id(tokenizer)
    if unk is None:
        return [[] for _ in texts]
    found = []
    for text in texts:
        encoding = tokenizer._tok.encode(text)
        spans: dict[int, list[int]] = {}  # word index -> [start, end] in the text
        for word, token, (start, end) in zip(
            encoding.word_ids, encoding.ids, encoding.offsets, strict=True
        ):
            if word is not None and token == unk:
                span = spans.setdefault(word, [start, end])
                span[0], span[1] = min(span[0], start), max(span[1], end)
        words = [text[a:b] for a, b in spans.values()]
        found.append(list(dict.fromkeys(words)))
    return found


def notice_tokens(
    tokenizer: Tokenizer, texts: Sequence[str], ids: torch.Tensor, *, synthetic_only: bool
) -> None:
    """Report expressions cut to the token limit, and (once) words outside the vocabulary.

    ``ids`` (E, N): the tokenizer's output for ``texts``. A cut expression is one
    whose last id is neither padding nor ``[SEP]``.
    """
    last = ids[:, -1]  # (E,)
    cut = [t for t, v in zip(texts, last.tolist(), strict=True) if v not in (0, tokenizer.sep_id)]
    if cut:
        log.warning(
            "%d expression(s) longer than the model's %d tokens were cut, e.g. %r",
            len(cut),
            tokenizer.max_length,
            cut[0],
        )
    unknown = [(t, w) for t, w in zip(texts, unknown_words(tokenizer, texts), strict=True) if w]
    if unknown:
        hint = f"; the model knows only the words of synthetic scenes: {RELEASED}"
        _once(
            "unk",
            "%d expression(s) hold words outside the model's vocabulary (read as [UNK]), "
            "e.g. %r in %r%s",
            len(unknown),
            ", ".join(unknown[0][1]),
            unknown[0][0],
            hint if synthetic_only else "",
        )
