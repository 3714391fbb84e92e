"""Tokenization against the reference's ids (golden/tokenizer_cases.json)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config
from lavt.errors import CheckpointError, InputError
from lavt.modeling import build_model
from lavt.tokenizer import Tokenizer, check_expression, tokenizer_for_model


def test_golden_cases(golden_dir):
    cases = json.loads((golden_dir / "tokenizer_cases.json").read_text())
    assert len(cases) >= 5
    tok = Tokenizer()
    ids, mask = tok([c["text"] for c in cases])
    assert ids.dtype == torch.long and ids.shape == (len(cases), 20)
    for row, case in enumerate(cases):
        assert ids[row].tolist() == case["input_ids"], case["text"]
        assert mask[row].tolist() == case["attention_mask"], case["text"]


def test_bundled_vocabulary_is_full():
    tok = Tokenizer()
    assert tok.vocab_size == 30522
    ids, _ = tok("the man on the left")
    assert ids[0, :7].tolist() == [101, 1996, 2158, 2006, 1996, 2187, 102]


def test_long_sentence_loses_sep_unless_kept():
    text = "a " * 40
    ids, mask = Tokenizer()(text)
    assert mask.sum() == 20 and ids[0, -1] != 102
    ids, mask = Tokenizer(keep_sep=True)(text)
    assert mask.sum() == 20 and ids[0, -1] == 102 and ids[0, 0] == 101


def test_other_length():
    ids, mask = Tokenizer(max_length=8)("the man on the left in a red shirt")
    assert ids.shape == (1, 8) and mask.sum() == 8


def test_custom_vocabulary():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "circle", "the"]
    ids, mask = Tokenizer(vocab=vocab)("The RED circle, blue")
    assert ids[0, : int(mask.sum())].tolist() == [2, 7, 5, 6, 1, 1, 3]
    with pytest.raises(InputError, match="PAD"):
        Tokenizer(vocab=["red", "[CLS]", "[SEP]", "[UNK]"])


def test_vocabulary_must_fit_the_model():
    small = build_model(
        tiny_config(
            text=tiny_config().text.__class__(
                vocab_size=1000,
                hidden_size=32,
                num_layers=1,
                num_heads=2,
                intermediate_size=64,
                max_position_embeddings=32,
            )
        )
    )
    with pytest.raises(CheckpointError, match="1000 token embeddings"):
        tokenizer_for_model(small)
    assert tokenizer_for_model(build_model(tiny_config())).vocab_size == 30522


@pytest.mark.parametrize("text", ["", "   ", "\t\n", None])
def test_empty_expressions_are_refused(text):
    with pytest.raises(InputError, match="empty"):
        check_expression(text)


def test_missing_vocab_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Tokenizer(tmp_path / "nope.txt")
