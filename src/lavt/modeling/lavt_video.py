"""``lavt_video``: text encoder + multi-modal Video Swin + the image decoder per frame.

The LAVT authors' video model (LAVT-RS, Yang et al., TPAMI 2024;
github.com/Yxxxb/LAVT-RS); docs/video.md. The text encoder and the decoder
are the image model's (:mod:`lavt.modeling.text`, :mod:`lavt.modeling.decoder`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lavt.modeling.config import LAVTVideoConfig
from lavt.modeling.decoder import SimpleDecoder
from lavt.modeling.lavt import check_vocab, foreground_logodds
from lavt.modeling.text import build_text_encoder, encode_language
from lavt.modeling.video_swin import MultiModalVideoSwin


class LAVTVideo(nn.Module):
    """Referring video segmentation model: a clip and one expression -> mask logits per frame.

    One module holds everything (BERT included), as :class:`lavt.modeling.LAVT`
    does; ``vocab`` is the tokenizer vocabulary a checkpoint carries (``None``:
    the bundled bert-base-uncased one).
    """

    def __init__(
        self,
        *,
        config: LAVTVideoConfig,
        backbone: nn.Module,
        text_encoder: nn.Module,
        classifier: nn.Module,
        vocab: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.classifier = classifier
        self.text_encoder = text_encoder
        self.vocab = vocab

    def forward_intermediates(
        self, clip: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Every intermediate the golden files record.

        ``clip`` (B, T, 3, H, W) normalised; ``input_ids``, ``attention_mask`` (B, N).
        Returns ``text_features`` (B, N, D), ``stages`` [(B*T, C_s, H_s, W_s)],
        ``decoder`` (B*T, 2, H_0, W_0) and ``logits`` (B, T, 2, H, W).
        """
        if clip.ndim != 5:
            raise ValueError(f"clip: expected (B, T, 3, H, W), got shape {tuple(clip.shape)}")
        B, T, _, H, W = clip.shape
        text, lang, lang_mask = encode_language(self.text_encoder, input_ids, attention_mask)
        stages = self.backbone(clip, lang, lang_mask)  # [(B*T, C_s, H_s, W_s)]
        decoded = self.classifier(stages)  # (B*T, 2, H_0, W_0)
        logits = F.interpolate(decoded, size=(H, W), mode="bilinear", align_corners=True)
        logits = logits.view(B, T, 2, H, W)  # (B*T, 2, H, W) -> (B, T, 2, H, W)
        return {"text_features": text, "stages": stages, "decoder": decoded, "logits": logits}

    def forward(
        self, clip: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """clip (B, T, 3, H, W) normalised; input_ids, attention_mask (B, N) -> (B, T, 2, H, W).

        Any T, H and W; the frames of a clip attend to each other in the backbone
        (windows of ``config.window_size[0]`` frames), so a clip is not the same as
        its frames run one by one.
        """
        return self.forward_intermediates(clip, input_ids, attention_mask)["logits"]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    @staticmethod
    def postprocess(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Frames' logits at the model's size -> object log-odds at the frames' size.

        ``logits`` (F, 2, h, w) -> (F, H, W) float32, ``> 0`` the mask. Bilinear
        with ``align_corners=True``: the LAVT-RS video protocol (``test_ytvos.py``
        resizes the logits so, then takes the argmax), not the image model's.
        """
        return foreground_logodds(logits, size, align_corners=True)


def build_video_model(config: LAVTVideoConfig, *, vocab: list[str] | None = None) -> LAVTVideo:
    """A randomly initialised ``lavt_video`` for ``config``."""
    check_vocab(vocab, config.text)
    return LAVTVideo(
        config=config,
        backbone=MultiModalVideoSwin(config),
        text_encoder=build_text_encoder(config.text),
        classifier=SimpleDecoder(stage3_dim=config.stage_dim(3)),
        vocab=vocab,
    )
