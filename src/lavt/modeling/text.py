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
    import transformers
    from transformers import BertModel

    encoder = BertModel(bert_config(config), add_pooling_layer=False)
    # transformers >= 5 takes a prepared 4-D SDPA mask as it is (see _prepared_mask)
    major = int(transformers.__version__.split(".")[0])
    encoder.lavt_4d_mask = major >= 5 and encoder.config._attn_implementation == "sdpa"
    return encoder


def encode_text(
    encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """input_ids, attention_mask: (B, N) -> last hidden state (B, N, D).

    Ids on the CPU are checked against the vocabulary (a mismatched tokenizer);
    on an accelerator the check would make the host wait for the device at every
    step, so there the tokenizer of :func:`lavt.tokenizer.tokenizer_for_model`
    is what keeps ids in range.
    """
    vocab = encoder.config.vocab_size
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()  # .max() would break graphs
    if not tracing and input_ids.device.type == "cpu" and input_ids.numel():
        if int(input_ids.max()) >= vocab:
            raise ValueError(
                f"token id {int(input_ids.max())} is outside the text encoder's vocabulary "
                f"of {vocab}: the tokenizer does not match this model"
            )
    mask = _prepared_mask(encoder, attention_mask)
    return encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state


def encode_language(
    encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the backbones take: (text (B, N, D), lang (B, D, N), lang_mask (B, N, 1) float)."""
    text = encode_text(encoder, input_ids, attention_mask)  # (B, N, D)
    lang = text.transpose(1, 2)  # (B, N, D) -> (B, D, N)
    return text, lang, attention_mask.unsqueeze(-1).to(lang.dtype)  # mask (B, N) -> (B, N, 1)


def _prepared_mask(encoder: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, N) 0/1 -> the (B, 1, 1, N) boolean mask SDPA takes, where transformers uses it as is.

    transformers 5 returns a 4-D mask unchanged; from a 2-D one it first asks
    whether every token is real (``mask.all()``), which on CUDA makes the host
    wait for the device. Older versions and the eager attention take the 2-D mask.
    """
    if not getattr(encoder, "lavt_4d_mask", False):
        return attention_mask
    return attention_mask.bool()[:, None, None, :]  # (B, N) -> (B, 1, 1, N)
