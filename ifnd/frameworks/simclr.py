"""SimCLR (Chen et al., 2020b): two views per image, the other 2B-1 views as candidates.

Each of the 2B views is an anchor; its positive is the other view of the same image and the
remaining 2B-2 views are its negatives (paper Sec. 3.1). Under DDP the candidates are the views
of every rank (gathered with gradient), the anchors those of this rank.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ifnd.distributed import gather, gather_with_grad, rank
from ifnd.falseneg.base import ContrastiveBatch
from ifnd.frameworks.base import Framework, FrameworkSpec
from ifnd.pairs import same_label_pairs
from ifnd.models import Encoder


class SimCLR(Framework):
    def __init__(self, arch: str, cifar_stem: bool = False):
        super().__init__()
        self.encoder = Encoder(arch, cifar_stem)

    def contrastive_batch(self, views: list[torch.Tensor], index: torch.Tensor, temperature: float) -> ContrastiveBatch:
        z = F.normalize(self.encoder(torch.cat(views)), dim=1)
        anchor_index = index.repeat(len(views))
        candidates = gather_with_grad(z)
        candidate_index = gather(anchor_index)
        logits = z @ candidates.T / temperature
        own = torch.arange(z.shape[0], device=z.device) + rank() * z.shape[0]
        is_self = own[:, None] == torch.arange(candidates.shape[0], device=z.device)[None, :]
        same_image = same_label_pairs(anchor_index[None], candidate_index[None])
        positive = same_image.select(same_image.candidate != own[same_image.anchor])
        return ContrastiveBatch(logits, anchor_index, candidate_index, positive, ~is_self, temperature,
                                anchor_embedding=z)


SPEC = FrameworkSpec("simclr", lambda cfg: SimCLR(cfg.arch, cfg.cifar_stem),
                     "SimCLR: two views, the other 2B-1 views as candidates")
