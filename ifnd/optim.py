"""The optimisers of ``--optimizer``: SGD with momentum (the suite's recipes) and LARS as SwAV runs it.

SwAV (``main_swav.py`` lines 171-177) wraps SGD (momentum 0.9, weight decay 1e-6) in apex's LARC with
trust coefficient 0.001 and ``clip=False``. For every parameter tensor ``p`` with gradient ``g`` and
weight decay ``wd``, LARC replaces the gradient, when ``||p|| > 0`` and ``||g|| > 0``, by

    g' = (g + wd p) * eta ||p|| / (||g|| + wd ||p|| + eps),      eta = 0.001, eps = 1e-8,

and leaves it alone otherwise (then without weight decay: LARC takes the decay away from SGD); SGD
then steps ``v <- m v + g'``, ``p <- p - lr v``. Every tensor is adapted, biases and BatchNorm too, as
in SwAV.
"""
from __future__ import annotations

import torch

OPTIMIZERS = ("sgd", "lars")
TRUST_COEFFICIENT = 0.001  # SwAV's LARC(trust_coefficient=0.001, clip=False)


class LARS(torch.optim.SGD):
    """SGD with momentum whose gradients LARC rescales per tensor (module docstring)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = TRUST_COEFFICIENT, eps: float = 1e-8):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.trust_coefficient, self.eps = trust_coefficient, eps

    @torch.no_grad()
    def step(self, closure=None):
        decays = [group["weight_decay"] for group in self.param_groups]
        for group, decay in zip(self.param_groups, decays):
            group["weight_decay"] = 0.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                p_norm, g_norm = p.norm(), p.grad.norm()
                adapt = (p_norm > 0) & (g_norm > 0)  # (no host synchronisation on a GPU)
                ratio = self.trust_coefficient * p_norm / (g_norm + p_norm * decay + self.eps)
                p.grad.add_(p * torch.where(adapt, decay, 0.0)).mul_(torch.where(adapt, ratio, 1.0))
        try:
            return super().step(closure)
        finally:
            for group, decay in zip(self.param_groups, decays):
                group["weight_decay"] = decay


def build_optimizer(cfg, params) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``params`` with the config's lr, momentum and weight decay."""
    if cfg.optimizer == "lars":
        return LARS(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
