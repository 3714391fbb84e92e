"""Image and mask preprocessing shared by training, evaluation and the predictor.

The image is resized to a square (aspect ratio not kept) with PIL bilinear
resampling, scaled to [0, 1] and normalized with the ImageNet mean and std;
the mask is resized with nearest-neighbour. Training, evaluation and the
predictor all go through these two functions.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """RGB PIL image -> normalized (3, size, size) float32 tensor."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0  # (H, W, 3)
    tensor = torch.from_numpy(array).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return (tensor - mean) / std


def mask_to_tensor(mask: np.ndarray, size: int) -> torch.Tensor:
    """(H, W) 0/1 mask -> (size, size) int64 tensor, nearest-neighbour resize."""
    resized = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="L").resize(
        (size, size), Image.NEAREST
    )
    return torch.from_numpy(np.asarray(resized, dtype=np.int64).copy())
