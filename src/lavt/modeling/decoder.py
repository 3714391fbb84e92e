"""The "simple decoding" head (docs/model.md, "Decoder").

Three stages of [upsample, concat with the next finer stage, Conv3x3-BN-ReLU x2],
then a 1x1 convolution to two classes at stride 4. Names follow the released
checkpoints (``classifier.{conv1_4,bn1_4,conv2_4,bn2_4,...,conv1_1}``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimpleDecoder(nn.Module):
    """Stage outputs (finest first, C0..8C0 channels) -> (B, 2, H_1, W_1) logits."""

    def __init__(self, *, stage3_dim: int) -> None:
        super().__init__()
        c4 = stage3_dim
        hidden = c4 // 2
        for level, in_dim in ((4, c4 + c4 // 2), (3, hidden + c4 // 4), (2, hidden + c4 // 8)):
            self.add_module(f"conv1_{level}", nn.Conv2d(in_dim, hidden, 3, padding=1, bias=False))
            self.add_module(f"bn1_{level}", nn.BatchNorm2d(hidden))
            self.add_module(f"conv2_{level}", nn.Conv2d(hidden, hidden, 3, padding=1, bias=False))
            self.add_module(f"bn2_{level}", nn.BatchNorm2d(hidden))
        self.conv1_1 = nn.Conv2d(hidden, 2, 1)

    def _fuse(self, level: int, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] < skip.shape[-2] or x.shape[-1] < skip.shape[-1]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        conv1 = getattr(self, f"conv1_{level}")
        if getattr(conv1, "takes_channel_blocks", False):  # lavt.winograd reads them in place
            joined: torch.Tensor | list[torch.Tensor] = [x, skip]
        else:
            joined = torch.cat([x, skip], dim=1)  # (B, C_x + C_skip, H, W)
        x = F.relu(getattr(self, f"bn1_{level}")(conv1(joined)))
        return F.relu(getattr(self, f"bn2_{level}")(getattr(self, f"conv2_{level}")(x)))

    def forward_features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: [(B, C_s, H_s, W_s) for s in 0..3] -> (B, C_3 / 2, H_0, W_0),
        the last feature map before the 1x1 classifier."""
        x0, x1, x2, x3 = features
        x = self._fuse(4, x3, x2)
        x = self._fuse(3, x, x1)
        return self._fuse(2, x, x0)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C_3 / 2, H_0, W_0) -> (B, 2, H_0, W_0) logits, contiguous (the
        features are channels-last where ``lavt.winograd`` computes the 3x3 convolutions)."""
        return self.conv1_1(features).contiguous()

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: [(B, C_s, H_s, W_s) for s in 0..3] -> (B, 2, H_0, W_0)."""
        return self.classify(self.forward_features(features))
