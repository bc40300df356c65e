"""Batched tensor augmentation: one call augments a whole uint8 batch, on CPU or GPU.

SimCLR's CIFAR augmentation (Chen et al., 2020b, Appendix B.9; SupCon's CIFAR recipe): random
resized crop, horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, grayscale with
p=0.2, no blur. Crop and flip are one affine resampling per image (``grid_sample``); the jitter
applies brightness, contrast, saturation, hue in that fixed order (torchvision draws a random
order) and turns hue by a rotation in YIQ space instead of HSV, a standard close approximation
that keeps the whole step batched. Randomness comes from an explicit generator, so a resumed
epoch replays the same views. Under torch.distributed each process holds a shard of the global
batch (``rows``): it draws the random numbers of the whole global batch, in the same order as one
process would, and keeps its rows, so the views do not depend on how the batch is split.

MoCo v2 / SwAV add a Gaussian blur with probability ``blur_p`` (0.5 on ImageNet; off by default,
so the SimCLR CIFAR recipe above is unchanged): sigma drawn uniformly from ``blur_sigma`` =
(0.1, 2.0) pixels at 224 px (MoCo v2's ``GaussianBlur([.1, 2.])``), scaled with the output size so
the recipe is resolution-independent, applied as one separable grouped convolution per batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_GRAY = torch.tensor([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class AugmentConfig:
    size: int = 32
    scale: tuple[float, float] = (0.2, 1.0)  # SupCon's CIFAR setting (SimCLR uses 0.08 on ImageNet)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0                           # MoCo v2 / SwAV on ImageNet: 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels at 224 px, scaled with ``size``


class _Draws:
    """Uniform random numbers for rows ``start:start + n`` of a batch of ``total`` images, drawn for all
    ``total`` rows so that every shard of a batch sees the numbers one process would."""

    def __init__(self, gen: torch.Generator, device, n: int, rows: tuple[int, int] | None = None):
        self.gen, self.device = gen, device
        self.start, self.total = rows if rows is not None else (0, n)
        self.n = n
        if not 0 <= self.start <= self.total - n:
            raise ValueError(f"rows {self.start}..{self.start + n} do not lie in a batch of {self.total}")

    def rand(self) -> torch.Tensor:
        return torch.rand(self.total, generator=self.gen, device=self.device)[self.start:self.start + self.n]

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return self.rand() * (high - low) + low


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float().div_(255)


def _standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean.view(1, 3, 1, 1).to(x.device)) / std.view(1, 3, 1, 1).to(x.device)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]`` standardised per channel (evaluation view)."""
    return _standardize(_to_unit(images), mean, std)


def _crop_flip(x: torch.Tensor, cfg: AugmentConfig, draws: _Draws) -> torch.Tensor:
    b = x.shape[0]
    area = draws.uniform(*cfg.scale)
    log_ratio = draws.uniform(math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    aspect = log_ratio.exp()
    w = (area * aspect).sqrt().clamp(max=1.0)
    h = (area / aspect).sqrt().clamp(max=1.0)
    cx = draws.uniform(-1, 1) * (1 - w)
    cy = draws.uniform(-1, 1) * (1 - h)
    flip = torch.where(draws.rand() < 0.5, -1.0, 1.0)
    zeros = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w * flip, zeros, cx], 1), torch.stack([zeros, h, cy], 1)], 1)
    grid = F.affine_grid(theta, [b, 3, cfg.size, cfg.size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp_(0, 1)


def _color_jitter(x: torch.Tensor, cfg: AugmentConfig, draws: _Draws) -> torch.Tensor:
    dev = x.device
    brightness, contrast, saturation, hue = cfg.jitter
    apply = (draws.rand() < cfg.jitter_p).view(-1, 1, 1, 1)
    y = (x * draws.uniform(1 - brightness, 1 + brightness).view(-1, 1, 1, 1)).clamp(0, 1)
    gray = torch.einsum("bchw,c->bhw", y, _GRAY.to(dev)).unsqueeze(1)
    y = _blend(y, gray.mean(dim=(2, 3), keepdim=True), draws.uniform(1 - contrast, 1 + contrast))
    gray = torch.einsum("bchw,c->bhw", y, _GRAY.to(dev)).unsqueeze(1)
    y = _blend(y, gray, draws.uniform(1 - saturation, 1 + saturation))
    angle = draws.uniform(-hue, hue) * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                            torch.stack([zero, sin, cos], 1)], 1)
    to_yiq = _RGB_TO_YIQ.to(dev)
    transform = torch.linalg.inv(to_yiq) @ rotation @ to_yiq
    y = torch.einsum("bij,bjhw->bihw", transform, y).clamp_(0, 1)
    return torch.where(apply, y, x)


def _grayscale(x: torch.Tensor, p: float, draws: _Draws) -> torch.Tensor:
    apply = (draws.rand() < p).view(-1, 1, 1, 1)
    gray = torch.einsum("bchw,c->bhw", x, _GRAY.to(x.device)).unsqueeze(1).expand_as(x)
    return torch.where(apply, gray, x)


def _gaussian_blur(x: torch.Tensor, cfg: AugmentConfig, draws: _Draws) -> torch.Tensor:
    b, c, h, w = x.shape
    dev = x.device
    scale = cfg.size / 224
    sigma = draws.uniform(cfg.blur_sigma[0] * scale, cfg.blur_sigma[1] * scale).clamp_min(1e-3)
    apply = (draws.rand() < cfg.blur_p).view(-1, 1, 1, 1)
    radius = max(1, min(math.ceil(3 * cfg.blur_sigma[1] * scale), (min(h, w) - 1) // 2))
    offsets = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # [B*C, 2r+1]
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), kernel.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), kernel.view(b * c, 1, -1, 1), groups=b * c)
    return torch.where(apply, y.view(b, c, h, w), x)


def augment(images: torch.Tensor, cfg: AugmentConfig, mean: torch.Tensor, std: torch.Tensor,
            gen: torch.Generator, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> one augmented, standardised float view ``[B, 3, size, size]``.

    ``rows = (start, total)``: the images are rows ``start:start + B`` of a global batch of ``total``.
    """
    draws = _Draws(gen, images.device, images.shape[0], rows)
    x = _crop_flip(_to_unit(images), cfg, draws)
    x = _grayscale(_color_jitter(x, cfg, draws), cfg.gray_p, draws)
    if cfg.blur_p > 0:  # no random draws otherwise: the SimCLR recipe's stream is unchanged
        x = _gaussian_blur(x, cfg, draws)
    return _standardize(x, mean, std)
