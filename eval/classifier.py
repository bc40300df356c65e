"""The classifier training loop shared by the linear probe (images or cached features), Places205
and semi-supervised fine-tuning: SGD with momentum and step decay, cross-entropy, top-1/top-5.

Conventions from MoCo's ``main_lincls.py`` (He et al., 2020), which Appendix C follows: the
linear layer starts from N(0, 0.01) weights and zero bias; the learning rate is multiplied by
``gamma`` at each milestone epoch (``lr * gamma ** (number of milestones <= epoch)``); a frozen
backbone stays in eval mode during training so BatchNorm statistics never change.
Top-k accuracy uses ``k = min(k, number of classes)``, so "top-5" of a 2-class problem is 100.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from eval.progress import bar, log

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def linear_head(in_dim: int, num_classes: int, generator: torch.Generator | None = None) -> nn.Linear:
    """One FC layer initialised as MoCo's main_lincls: weight ~ N(0, 0.01), bias 0."""
    head = nn.Linear(in_dim, num_classes)
    nn.init.normal_(head.weight, mean=0.0, std=0.01, generator=generator)
    nn.init.zeros_(head.bias)
    return head


def sgd_step_decay(param_groups: list[dict], momentum: float, weight_decay: float, milestones: Sequence[int],
                   gamma: float) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR]:
    """SGD over ``[{"params", "lr"}, ...]`` and a per-epoch step schedule (call ``scheduler.step()`` per epoch)."""
    optimizer = torch.optim.SGD(param_groups, lr=param_groups[0]["lr"], momentum=momentum,
                                weight_decay=weight_decay)
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)


class TensorBatches:
    """Mini-batches of in-memory tensors, reshuffled every pass by a seeded generator (no per-item overhead)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} feature rows but {y.shape[0]} labels")
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.x.shape[0] // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.x.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.x[index], self.y[index]


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """Number of samples whose target is among the ``min(k, classes)`` highest logits, per k."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == targets.view(-1, 1)
    return [int(hits[:, :min(k, logits.shape[1])].any(1).sum()) for k in ks]


def train_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer, device: torch.device,
                train_mode: bool, progress: bool = False, desc: str = "train") -> float:
    """One pass of cross-entropy SGD; ``train_mode=False`` keeps BatchNorm frozen (linear evaluation)."""
    model.train(train_mode)
    total, count = 0.0, 0
    for inputs, targets in bar(batches, progress, desc, leave=False):
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * targets.shape[0]
        count += targets.shape[0]
    if not torch.isfinite(torch.tensor(total)):
        raise FloatingPointError("the classifier's loss became non-finite: lower the learning rate")
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, device: torch.device, progress: bool = False,
             desc: str = "eval") -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) over all batches, model in eval mode."""
    model.eval()
    correct, count = [0, 0], 0
    for inputs, targets in bar(batches, progress, desc, leave=False):
        logits = model(inputs.to(device, non_blocking=True))
        for i, hits in enumerate(topk_correct(logits.float().cpu(), targets.cpu())):
            correct[i] += hits
        count += targets.shape[0]
    if count == 0:
        raise ValueError("no evaluation samples")
    return {"top1": 100.0 * correct[0] / count, "top5": 100.0 * correct[1] / count, "num_samples": count}


def fit(model: nn.Module, train_batches: Batches, optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler, epochs: int, device: torch.device, train_mode: bool,
        progress: bool = True, desc: str = "epoch") -> list[float]:
    """``epochs`` passes with one scheduler step after each; returns the mean loss of every epoch."""
    losses = []
    epochs_bar = bar(range(epochs), progress, desc)
    for epoch in epochs_bar:
        lr = optimizer.param_groups[0]["lr"]
        losses.append(train_epoch(model, train_batches, optimizer, device, train_mode, progress, f"{desc} {epoch}"))
        scheduler.step()
        epochs_bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.4g}")
        log(progress, f"{desc} epoch {epoch + 1}/{epochs}  loss {losses[-1]:.4f}  lr {lr:.4g}")
    return losses
