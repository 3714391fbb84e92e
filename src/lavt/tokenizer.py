"""Tokenization of referring expressions (docs/data.md, "Expressions and tokens").

The bert-base-uncased WordPiece vocabulary ships inside the package, so no
download is ever needed; so does the 60-token vocabulary of the synthetic
scenes (:func:`synthetic_vocabulary`), which the default model reads with.
``[CLS] tokens [SEP]`` is cut to the first ``max_length`` ids (the reference
drops ``[SEP]`` of a long sentence; pass ``keep_sep=True`` to keep it) and
padded with id 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

from lavt.assets import asset_path, bert_vocab_path
from lavt.errors import CheckpointError, InputError
from lavt.runtime import unwrap_model

DEFAULT_MAX_LENGTH = 20
SYNTHETIC_VOCAB = "synthetic-vocab.txt"


def synthetic_vocabulary() -> list[str]:
    """Word vocabulary covering every word ``lavt synth`` writes ([PAD] = 0, 60 tokens).

    A bundled file (one token a line), so that building a model for synthetic
    data does not import the generator; the generator's tests check that it
    covers every word it writes.
    """
    text = asset_path(SYNTHETIC_VOCAB).read_text(encoding="utf-8")
    return text.splitlines()


#: words ``lavt synth --generalized`` adds (plurals, quantifiers); its tests check coverage.
GENERALIZED_WORDS = (
    "all both boxes circles crosses diamonds discs objects ones shapes squares stars things "
    "three triangles two"
)


def generalized_synthetic_vocabulary() -> list[str]:
    """:func:`synthetic_vocabulary` with the generalized words appended (classic ids unchanged)."""
    base = synthetic_vocabulary()
    return base + sorted(set(GENERALIZED_WORDS.split()) - set(base))


@lru_cache(maxsize=8)
def _load_wordpiece(vocab: str | tuple[str, ...]):
    from tokenizers import BertWordPieceTokenizer

    if isinstance(vocab, tuple):
        vocab = {token: index for index, token in enumerate(vocab)}
    tok = BertWordPieceTokenizer(
        vocab, lowercase=True, strip_accents=True, handle_chinese_chars=True
    )
    tok.no_truncation()
    tok.no_padding()
    return tok


class Tokenizer:
    """WordPiece tokenizer giving LAVT's fixed-length ids and attention masks.

    Args:
        vocab_path: a WordPiece vocabulary file (one token a line); the bundled
            bert-base-uncased one by default.
        vocab: the vocabulary as a list of tokens (id = position), instead of
            a file; checkpoints trained with a small word vocabulary carry one.
        max_length: number of ids per expression (N, 20 in the reference).
        keep_sep: when an expression is cut, end it with ``[SEP]`` instead of
            the reference's plain cut.
    """

    def __init__(
        self,
        vocab_path: str | Path | None = None,
        *,
        vocab: list[str] | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        keep_sep: bool = False,
    ) -> None:
        if max_length < 2:
            raise InputError(f"max_length {max_length}: must be at least 2", param="max_length")
        if vocab is not None:
            missing = [t for t in ("[CLS]", "[SEP]", "[UNK]") if t not in vocab]
            if missing or not vocab or vocab[0] != "[PAD]":
                raise InputError(
                    "vocab: needs [PAD] at id 0 and [CLS], [SEP], [UNK]", param="vocab"
                )
            self._tok = _load_wordpiece(tuple(vocab))
        else:
            path = Path(vocab_path) if vocab_path is not None else bert_vocab_path()
            if not path.is_file():
                raise InputError(
                    f"vocab_path {path}: vocabulary file not found", param="vocab_path"
                )
            self._tok = _load_wordpiece(str(path))
        self.max_length = max_length
        self.keep_sep = keep_sep
        self.pad_id = 0
        self.sep_id = self._tok.token_to_id("[SEP]")

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def words(self, text: str) -> list[str]:
        """The words of ``text`` as the tokenizer sees them before WordPiece: lowercased,
        accents stripped, punctuation split off ("The mug," -> ["the", "mug", ","])."""
        normalized = self._tok.normalizer.normalize_str(text)
        return [word for word, _ in self._tok.pre_tokenizer.pre_tokenize_str(normalized)]

    def encode_ids(self, text: str) -> list[int]:
        """``[CLS] ... [SEP]`` ids of one text, cut to ``max_length``."""
        ids = self._tok.encode(text).ids[: self.max_length]
        if self.keep_sep and ids[-1] != self.sep_id:
            ids[-1] = self.sep_id
        return ids

    def __call__(self, texts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize expressions.

        Returns:
            input_ids: (B, N) int64, padded with 0.
            attention_mask: (B, N) int64, 1 on kept ids.
        """
        if isinstance(texts, str):
            texts = [texts]
        input_ids = torch.zeros(len(texts), self.max_length, dtype=torch.long)
        attention_mask = torch.zeros(len(texts), self.max_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = self.encode_ids(text)
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask


def check_expression(text: object, *, name: str = "text") -> str:
    """Refuse an empty or whitespace-only expression; the error names the parameter ``name``."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(
            f"{name}: the expression is empty", param=name if name.isidentifier() else None
        )
    return text


def tokenizer_for_model(model, *, keep_sep: bool = False) -> Tokenizer:
    """The tokenizer a model was trained with: its own vocabulary, or bert-base-uncased.

    Raises :class:`CheckpointError` when the tokenizer can produce ids the
    model's text encoder has no embedding for.
    """
    model = unwrap_model(model)
    config = model.config
    tokenizer = Tokenizer(vocab=model.vocab, max_length=config.max_text_len, keep_sep=keep_sep)
    if tokenizer.vocab_size > config.text.vocab_size:
        raise CheckpointError(
            f"the checkpoint's text encoder has {config.text.vocab_size} token embeddings but "
            f"its tokenizer has {tokenizer.vocab_size} tokens; it cannot read real text"
        )
    return tokenizer
