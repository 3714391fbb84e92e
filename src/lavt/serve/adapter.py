"""The one place where the server touches the model.

Three steps, each reusing the predictor's public helpers so that a served mask
is the mask ``lavt predict`` writes for the same image and text:

- :meth:`ModelAdapter.prepare`: one image + its texts -> tensors
  (:func:`lavt.data.transforms.image_to_tensor`, the model's tokenizer) and
  each text's words outside the vocabulary (:func:`lavt.predict.notices.unknown_words`);
- :meth:`ModelAdapter.forward`: one batch of image-expression pairs -> mask
  logits and, with a no-target head, its logits;
- :meth:`ModelAdapter.postprocess`: those -> :class:`lavt.predict.Prediction`
  at the image's own size, through the predictor's own
  :func:`lavt.predict.predictions_from_logits` (the "no object" decision too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from lavt.data.transforms import image_to_tensor
from lavt.errors import InputError
from lavt.modeling import LAVT, LAVTVideo
from lavt.modeling.no_target import check_rule, resolve_rule
from lavt.precision import prepare_for_inference
from lavt.predict import Prediction, predictions_from_logits
from lavt.predict.notices import unknown_words
from lavt.runtime import autocast, dtype_name
from lavt.tokenizer import tokenizer_for_model


@dataclass
class PreparedImage:
    """One request's model inputs."""

    pixels: torch.Tensor  # (3, S, S) float32, normalized
    input_ids: torch.Tensor  # (E, N) int64, one row per expression
    attention_mask: torch.Tensor  # (E, N) int64
    texts: list[str]
    width: int
    height: int
    unknown_words: list[list[str]] = field(default_factory=list)  # per text, read as [UNK]

    @property
    def num_pairs(self) -> int:
        return len(self.texts)


@torch.inference_mode()
def run_forward(
    model: LAVT,
    device: torch.device,
    amp: torch.dtype | None,
    pixels: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward of ``model`` on ``device`` under autocast to ``amp``: pixels (B, 3, S, S),
    input_ids/attention_mask (B, N) -> mask logits (B, 2, S, S) float32 and no-target
    logits (B, 2) float32, or None without a head. The server's one forward, in its
    batcher thread or in :mod:`lavt.serve.model_process`."""
    with autocast(device, amp):
        logits, no_target = model(
            pixels.to(device),
            input_ids.to(device),
            attention_mask.to(device),
            return_no_target=True,
        )
    return logits.float(), None if no_target is None else no_target.float()


class ModelAdapter:
    """A LAVT on a device, with the predictor's pre- and postprocessing."""

    def __init__(
        self,
        model: LAVT,
        *,
        device: torch.device,
        amp: torch.dtype | None = None,
        checkpoint: str | Path | None = None,
        no_target_rule: str = "auto",
        area_threshold: int = 0,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        if isinstance(model, LAVTVideo):
            raise InputError(
                "checkpoint: a lavt_video (video) model; lavt serve takes image models "
                "(segment videos with lavt predict --video)",
                param="checkpoint",
            )
        check_rule(no_target_rule, area_threshold)
        self.device = device
        # dtype: a low-precision copy made once (lavt.precision); amp: autocast only
        self.model, self.precision = prepare_for_inference(model, device, dtype, amp=amp)
        self.has_head = getattr(model, "no_target_head", None) is not None
        self.no_target_rule = resolve_rule(no_target_rule, self.has_head)
        self.area_threshold = area_threshold
        self.amp = self.precision.amp
        self.tokenizer = tokenizer_for_model(model)
        self.img_size = int(model.config.img_size)
        self.checkpoint_name = Path(checkpoint).name if checkpoint else "unknown"

    @property
    def name(self) -> str:
        return Path(self.checkpoint_name).stem

    def describe(self) -> dict:
        """Architecture, input size, vocabulary kind and checkpoint, for ``GET /v1/model``."""
        config = self.model.config
        vocab = self.model.vocab
        return {
            "name": self.name,
            "checkpoint": self.checkpoint_name,
            "architecture": {
                "variant": config.variant,
                "embed_dim": config.embed_dim,
                "depths": list(config.depths),
                "num_heads": list(config.num_heads),
                "window_size": config.window_size,
                "text_layers": config.text.num_layers,
            },
            "input_size": [self.img_size, self.img_size],
            "max_text_tokens": config.max_text_len,
            "vocabulary": {
                "kind": "checkpoint" if vocab is not None else "bert-base-uncased",
                "size": self.tokenizer.vocab_size,
            },
            "device": str(self.device),
            "amp": dtype_name(self.amp),
            "dtype": self.precision.name,
            "dtype_reason": self.precision.reason,
            "no_target": {
                "head": self.has_head,
                "rule": self.no_target_rule,
                "area_threshold": self.area_threshold,
            },
        }

    def prepare(self, picture: Image.Image, texts: list[str]) -> PreparedImage:
        """RGB picture and its E expressions -> :class:`PreparedImage` (on the CPU)."""
        ids, attention = self.tokenizer(texts)  # (E, N), (E, N)
        width, height = picture.size
        pixels = image_to_tensor(picture, self.img_size)  # (3, S, S)
        unknown = unknown_words(self.tokenizer, texts)
        return PreparedImage(pixels, ids, attention, list(texts), width, height, unknown)

    def forward(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pixels (B, 3, S, S), input_ids/attention_mask (B, N) -> mask logits (B, 2, S, S)
        float32 and no-target logits (B, 2) float32, or None without a head."""
        return run_forward(self.model, self.device, self.amp, pixels, input_ids, attention_mask)

    @torch.inference_mode()
    def postprocess(
        self,
        outputs: tuple[torch.Tensor, torch.Tensor | None],
        texts: list[str],
        height: int,
        width: int,
    ) -> list[Prediction]:
        """(mask logits (E, 2, S, S), no-target logits (E, 2) or None) -> one
        :class:`Prediction` per text at (height, width), as ``Predictor`` makes them."""
        logits, no_target = outputs
        return list(
            predictions_from_logits(
                texts,
                logits,
                no_target,
                (height, width),
                rule=self.no_target_rule,
                area_threshold=self.area_threshold,
            )
        )
