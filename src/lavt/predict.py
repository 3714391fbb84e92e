"""The user-facing predictor (segment-anything's ``SamPredictor`` pattern).

::

    import lavt
    predictor = lavt.Predictor(lavt.load_model("refcoco.pth"))
    masks = [p.mask for p in predictor.predict("photo.jpg", ["the man on the left", "the dog"])]

All expressions of one image run in one batch. The image is preprocessed as in
training (square resize to the model's img_size, ImageNet normalisation) and
the logits are resized back to the image's own size, so masks line up with the
EXIF-transposed picture.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lavt.data.transforms import image_to_tensor
from lavt.errors import InputError
from lavt.imageio import load_image, to_rgb
from lavt.modeling import LAVT
from lavt.tokenizer import check_expression, tokenizer_for_model


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Prediction:
    """One expression's result; arrays are at the image's own size (H, W)."""

    text: str
    mask: np.ndarray  # (H, W) bool
    probability: np.ndarray  # (H, W) float32, probability of "referred object"

    @property
    def foreground_fraction(self) -> float:
        return float(self.mask.mean())

    @property
    def mean_foreground_probability(self) -> float:
        return float(self.probability[self.mask].mean()) if self.mask.any() else 0.0


class Predictor:
    """Segments the objects that expressions refer to in an image.

    Args:
        model: a LAVT (e.g. from :func:`lavt.load_model`); moved to ``device``
            and put in eval mode.
        device: default CUDA when available, else the CPU.
        img_size: square input size; default the model's training size.
        amp: autocast dtype on CUDA (``torch.bfloat16``), or None for float32.
    """

    def __init__(
        self,
        model: LAVT,
        *,
        device: str | torch.device | None = None,
        img_size: int | None = None,
        amp: torch.dtype | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer_for_model(model)
        self.img_size = int(img_size or model.config.img_size)
        if self.img_size < 16:
            raise InputError(f"--img-size must be at least 16, got {self.img_size}")
        self.amp = amp

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = None,
        runtime: str = "torch",
        **kwargs,
    ) -> Predictor:
        """Load ``path`` (default: the bundled model) and wrap it.

        ``runtime="onnxruntime"`` runs a graph written by ``lavt export`` instead.
        """
        from lavt.export.runner import load_for_runtime

        device = torch.device(device) if device is not None else default_device()
        model = load_for_runtime(path, runtime=runtime, device=device)
        return cls(model, device=device, **kwargs)

    def _as_image(self, image: str | os.PathLike | Image.Image | np.ndarray) -> Image.Image:
        if isinstance(image, Image.Image):
            return to_rgb(image)
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise InputError("image arrays must be uint8 (H, W) or (H, W, 3)")
            return to_rgb(Image.fromarray(image))
        return load_image(image)

    @torch.inference_mode()
    def predict(
        self, image: str | os.PathLike | Image.Image | np.ndarray, texts: str | list[str]
    ) -> list[Prediction]:
        """Masks for each expression in ``texts`` (one batch), at the image's size."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("--text: no expression given")
        for text in texts:
            check_expression(text)
        picture = self._as_image(image)
        width, height = picture.size
        pixels = image_to_tensor(picture, self.img_size).to(self.device)  # (3, S, S)
        ids, attention = self.tokenizer(texts)
        batch = pixels.unsqueeze(0).expand(len(texts), -1, -1, -1)  # (E, 3, S, S), no copy
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp)
            if self.amp
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.model(batch, ids.to(self.device), attention.to(self.device))
        logits = F.interpolate(
            logits.float(), size=(height, width), mode="bilinear", align_corners=False
        )
        probability = logits.softmax(dim=1)[:, 1].cpu().numpy()  # (E, H, W)
        return [
            Prediction(text=t, mask=p > 0.5, probability=p.astype(np.float32))
            for t, p in zip(texts, probability, strict=True)
        ]
