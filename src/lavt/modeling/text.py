"""The text encoder: a BERT without pooler (docs/model.md, "Text encoder").

``transformers.BertModel`` keeps the parameter names of the released
checkpoints (``embeddings.*``, ``encoder.layer.{i}.*``) and BERT's exact
semantics: token type 0, absolute positions, post-LN, exact GELU, LayerNorm eps
1e-12.
"""

from __future__ import annotations

import torch
from torch import nn

from lavt.modeling.config import TextEncoderConfig


def bert_config(config: TextEncoderConfig, *, attn_implementation: str = "sdpa"):
    """The ``transformers.BertConfig`` for ``config``."""
    from transformers import BertConfig

    bert = BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        hidden_dropout_prob=config.hidden_dropout,
        attention_probs_dropout_prob=config.attention_dropout,
        layer_norm_eps=config.layer_norm_eps,
        hidden_act="gelu",
    )
    bert._attn_implementation = attn_implementation
    return bert


def build_text_encoder(config: TextEncoderConfig) -> nn.Module:
    """A randomly initialised ``BertModel`` without pooler."""
    from transformers import BertModel

    return BertModel(bert_config(config), add_pooling_layer=False)


def encode_text(
    encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """input_ids, attention_mask: (B, N) -> last hidden state (B, N, D)."""
    vocab = encoder.config.vocab_size
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()  # .max() would break graphs
    if not tracing and input_ids.numel() and int(input_ids.max()) >= vocab:
        raise ValueError(
            f"token id {int(input_ids.max())} is outside the text encoder's vocabulary "
            f"of {vocab}: the tokenizer does not match this model"
        )
    return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
