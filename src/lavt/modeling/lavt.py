"""LAVT: text encoder + multi-modal Swin + simple decoder (docs/model.md, "Overview").

With ``LAVTConfig.no_target_head`` the model also has a 2-way "no object"
classifier for generalized referring segmentation (docs/gres.md). ``forward``
still returns the mask logits alone; ``forward(..., return_no_target=True)``
returns :class:`LAVTOutput` (``no_target_logits`` None for a model without head).

``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` follow
``huggingface_hub.PyTorchModelHubMixin``'s interface without inheriting it (the Hub
client is optional): a folder of ``config.json`` (the ``LAVTConfig``), ``vocab.txt``,
``model.safetensors`` and a generated card, read back through
:mod:`lavt.checkpoint.io` (strict, no code run, nothing unpickled). docs/hub.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lavt.errors import ConfigError
from lavt.modeling.config import LAVTConfig, TextEncoderConfig
from lavt.modeling.decoder import SimpleDecoder
from lavt.modeling.no_target import NoTargetHead
from lavt.modeling.swin import MultiModalSwin
from lavt.modeling.text import build_text_encoder, encode_language

if TYPE_CHECKING:
    from lavt.hub.card import CardInfo


class LAVTOutput(NamedTuple):
    """``logits`` (B, 2, H, W); ``no_target_logits`` (B, 2), class 1 = "no object", or None."""

    logits: torch.Tensor
    no_target_logits: torch.Tensor | None


class LAVT(nn.Module):
    """Referring image segmentation model.

    One module holds everything (BERT included), so one state dict and one DDP
    wrapper cover both released variants. ``vocab`` is the tokenizer vocabulary
    a checkpoint carries (``None``: the bundled bert-base-uncased one).
    """

    def __init__(
        self,
        *,
        config: LAVTConfig,
        backbone: nn.Module,
        text_encoder: nn.Module,
        classifier: nn.Module,
        vocab: list[str] | None = None,
        no_target_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.classifier = classifier
        self.text_encoder = text_encoder
        self.vocab = vocab
        self.no_target_head = no_target_head  # None: no state-dict keys, as before

    def forward_intermediates(
        self, image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Every intermediate the golden files record.

        Returns ``text_features`` (B, N, D), ``stages`` [(B, C_s, H_s, W_s)],
        ``decoder`` (B, 2, H_1, W_1) and ``logits`` (B, 2, H, W); with a
        no-target head also ``no_target_logits`` (B, 2).
        """
        text, lang, lang_mask = encode_language(self.text_encoder, input_ids, attention_mask)
        stages = self.backbone(image, lang, lang_mask)
        features = self.classifier.forward_features(stages)  # (B, C, H_1, W_1)
        decoded = self.classifier.classify(features)  # (B, 2, H_1, W_1)
        logits = F.interpolate(
            decoded, size=image.shape[-2:], mode="bilinear", align_corners=True
        )  # (B, 2, H, W)
        out = {"text_features": text, "stages": stages, "decoder": decoded, "logits": logits}
        if self.no_target_head is not None:
            out["no_target_logits"] = self.no_target_head(features, text, attention_mask)
        return out

    def forward(
        self,
        image: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        return_no_target: bool = False,
    ) -> torch.Tensor | LAVTOutput:
        """image (B, 3, H, W) normalized; input_ids, attention_mask (B, N) -> (B, 2, H, W).

        ``return_no_target=True``: :class:`LAVTOutput` (logits and the no-target
        logits (B, 2), None when the model has no head).
        """
        out = self.forward_intermediates(image, input_ids, attention_mask)
        if return_no_target:
            return LAVTOutput(out["logits"], out.get("no_target_logits"))
        return out["logits"]

    # -- the Hugging Face Hub interface (PyTorchModelHubMixin's method names and arguments)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> LAVT:
        """The model of a pretrained folder or a Hub repository (``owner/repo`` that is
        not a local path, at ``revision``), or of any checkpoint :meth:`from_checkpoint`
        takes; in eval mode on ``device``."""
        from lavt.hub.hf import is_repo_id, repo_source

        source = os.fspath(pretrained_model_name_or_path)
        local = source.lower().startswith("hf://") or Path(source).exists()
        if revision is not None or (not local and is_repo_id(source)):
            source = repo_source(source, revision)
        return cls.from_checkpoint(source, device=device, dtype=dtype)

    @classmethod
    def from_checkpoint(
        cls,
        source: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> LAVT:
        """The model of a path (file or pretrained folder), a registered name, a URL or
        ``hf://...`` (``lavt.load_model``), read through :mod:`lavt.checkpoint.io`: strict,
        nothing unpickled, no code from a folder run; in eval mode on ``device``."""
        from lavt.checkpoint.io import load_state_dict_strict, read_model_weights

        config, state_dict, vocab = read_model_weights(source)
        model = build_model(config, vocab=vocab)
        load_state_dict_strict(model, state_dict, source=os.fspath(source))
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        card: CardInfo | None = None,
        dtype: str = "float32",
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` (floating tensors as ``dtype``),
        ``vocab.txt``, ``tokenizer_config.json`` and a generated model card ``README.md``
        (``card``: dataset, metrics, repository name; :class:`lavt.hub.card.CardInfo`)."""
        from lavt.checkpoint.pretrained import write_pretrained_dir
        from lavt.hub.card import CardInfo, model_card

        text = model_card(
            self.config,
            card or CardInfo(),
            vocab_size=len(self.vocab) if self.vocab is not None else None,
            parameters=sum(p.numel() for p in self.parameters()),
        )
        return write_pretrained_dir(self, save_directory, card=text, dtype=dtype)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        card: CardInfo | None = None,
        dtype: str = "float32",
        private: bool | None = None,
        branch: str | None = None,
        commit_message: str = "Upload LAVT model with lavt",
        token: str | None = None,
    ) -> str:
        """``save_pretrained`` into a temporary folder, then one commit to ``repo_id``
        (created if needed); returns the commit URL. Needs ``lavt[hub]`` and a token."""
        import dataclasses

        from lavt.hub.card import CardInfo
        from lavt.hub.hf import repo_source, upload_folder

        repo_source(repo_id)  # a malformed name is refused before anything is written
        card = dataclasses.replace(card or CardInfo(), repo_id=repo_id)
        with tempfile.TemporaryDirectory(prefix="lavt-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model", card=card, dtype=dtype)
            return upload_folder(
                folder,
                repo_id,
                private=private,
                branch=branch,
                commit_message=commit_message,
                token=token,
            )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    @staticmethod
    def postprocess(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Logits at the model's input size -> foreground log-odds at an image's size.

        ``logits`` (B, 2, h, w) (background, object) -> (B, H, W) float32 for
        ``size = (H, W)``: ``> 0`` is the mask (the same pixels as
        ``argmax(1) == 1``) and ``.sigmoid()`` the probability of "referred
        object" (the softmax of the two logits). Resized bilinearly with
        ``align_corners=False`` (:func:`foreground_logodds`). Every caller
        (predictor, evaluator, worst-K overlays) goes through here, like SAM's
        ``postprocess_masks``. Call it with a few rows at a time for large images:
        the output is B x H x W floats.
        """
        return foreground_logodds(logits, size, align_corners=False)


def foreground_logodds(
    logits: torch.Tensor, size: tuple[int, int], *, align_corners: bool
) -> torch.Tensor:
    """(B, 2, h, w) background/object logits -> (B, H, W) float32 object log-odds at ``size``.

    The difference of the two logits is resized bilinearly, which equals resizing
    both (the resize is linear) at half the memory; ``> 0`` is ``argmax(1) == 1``.
    """
    foreground = (logits[:, 1:2] - logits[:, 0:1]).float()  # (B, 2, h, w) -> (B, 1, h, w)
    if tuple(foreground.shape[-2:]) != tuple(size):
        foreground = F.interpolate(
            foreground, size=tuple(size), mode="bilinear", align_corners=align_corners
        )  # (B, 1, H, W)
    return foreground[:, 0]  # (B, 1, H, W) -> (B, H, W)


def check_vocab(vocab: list[str] | None, text: TextEncoderConfig) -> None:
    """Refuse a tokenizer vocabulary larger than the text encoder's embedding table."""
    if vocab is not None and len(vocab) > text.vocab_size:
        raise ConfigError(
            f"vocab: {len(vocab)} tokens do not fit the text encoder's "
            f"{text.vocab_size} embeddings",
            param="vocab",
        )


def build_model(config: LAVTConfig, *, vocab: list[str] | None = None) -> LAVT:
    """A randomly initialised LAVT for ``config``."""
    check_vocab(vocab, config.text)
    return LAVT(
        config=config,
        backbone=MultiModalSwin(config),
        text_encoder=build_text_encoder(config.text),
        classifier=SimpleDecoder(stage3_dim=config.stage_dim(3)),
        vocab=vocab,
        no_target_head=(
            NoTargetHead(visual_dim=config.stage_dim(3) // 2, text_dim=config.text.hidden_size)
            if config.no_target_head
            else None
        ),
    )
