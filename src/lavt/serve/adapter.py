"""The one place where the server touches the model.

Three steps, each reusing the predictor's public helpers so that a served mask
is the mask ``lavt predict`` writes for the same image and text:

- :meth:`ModelAdapter.prepare`: one image + its texts -> tensors
  (:func:`lavt.data.transforms.image_to_tensor`, the model's tokenizer);
- :meth:`ModelAdapter.forward`: one batch of image-expression pairs -> logits;
- :meth:`ModelAdapter.postprocess`: logits -> :class:`lavt.predict.Prediction`
  at the image's own size, through the model-owned :meth:`LAVT.postprocess`
  as ``Predictor`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from lavt.data.transforms import image_to_tensor
from lavt.modeling import LAVT
from lavt.predict import Prediction
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

    @property
    def num_pairs(self) -> int:
        return len(self.texts)


class ModelAdapter:
    """A LAVT on a device, with the predictor's pre- and postprocessing."""

    def __init__(
        self,
        model: LAVT,
        *,
        device: torch.device,
        amp: torch.dtype | None = None,
        checkpoint: str | Path | None = None,
    ) -> None:
        self.device = device
        self.model = model.to(device).eval()
        self.amp = amp
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
        }

    def prepare(self, picture: Image.Image, texts: list[str]) -> PreparedImage:
        """RGB picture and its E expressions -> :class:`PreparedImage` (on the CPU)."""
        ids, attention = self.tokenizer(texts)  # (E, N), (E, N)
        width, height = picture.size
        pixels = image_to_tensor(picture, self.img_size)  # (3, S, S)
        return PreparedImage(pixels, ids, attention, list(texts), width, height)

    @torch.inference_mode()
    def forward(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """pixels (B, 3, S, S), input_ids/attention_mask (B, N) -> logits (B, 2, S, S) float32."""
        with autocast(self.device, self.amp):
            logits = self.model(
                pixels.to(self.device),
                input_ids.to(self.device),
                attention_mask.to(self.device),
            )
        return logits.float()

    @torch.inference_mode()
    def postprocess(
        self, logits: torch.Tensor, texts: list[str], height: int, width: int
    ) -> list[Prediction]:
        """logits (E, 2, S, S) -> one :class:`Prediction` per text, at (height, width).

        Through the model-owned :meth:`LAVT.postprocess` one expression at a
        time (memory does not grow with E), with the predictor's mask
        (log-odds > 0) and score (mean sigmoid over the mask).
        """
        predictions = []
        for row, text in enumerate(texts):
            foreground = LAVT.postprocess(logits[row : row + 1], (height, width))[0]  # (H, W)
            mask = foreground > 0
            score = float(foreground[mask].sigmoid().mean()) if bool(mask.any()) else 0.0
            predictions.append(Prediction(text, mask.cpu().numpy(), score))
        return predictions
