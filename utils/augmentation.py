"""Training augmentation as batched tensor work: one random affine map and one elastic distortion per
image, applied to the whole batch by a single grid_sample. The pipeline's pictures call this very
function with the same settings, so what they show is what training sees."""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Half the strengths this project first used (12 degrees, 8%, 10%, 0.08): as accurate over 15 epochs,
    and more so than three quarters or a third of them (docs/performance.md)."""
    rotation: float = 6.0  # degrees, uniform in +-rotation: slanted handwriting
    translation: float = 0.04  # fraction of the image side, uniform in +-translation, each axis
    scale: float = 0.05  # zoom factor uniform in 1 +- scale: digits of different sizes
    elastic: float = 0.04  # peak displacement of a smooth random field, in half-image units: wobbly strokes
    elastic_grid: int = 4  # the field is drawn on a grid this coarse and smoothly upsampled


def augment(images: torch.Tensor, generator: torch.Generator | None = None,
            config: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """(N, 1, H, W) floats in [0, 1] -> the same shape, dtype and range, each image transformed at random."""
    n, device = images.shape[0], images.device

    def uniform(*shape):  # in [-1, 1)
        return torch.rand(*shape, generator=generator, device=device) * 2 - 1

    angle = uniform(n) * math.radians(config.rotation)
    zoom = 1 + uniform(n) * config.scale
    shift = uniform(n, 2) * config.translation * 2  # grid coordinates span [-1, 1]: a side is 2 units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    if config.elastic > 0:
        field = uniform(n, 2, config.elastic_grid, config.elastic_grid) * config.elastic
        field = F.interpolate(field, size=images.shape[-2:], mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp_(0, 1)
