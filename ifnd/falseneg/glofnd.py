"""GloFND (Balmaseda et al., 2025, "Discovering Global False Negatives On the Fly for Self-supervised
Contrastive Learning"): a similarity threshold per anchor sample, learned during training.

For anchor sample ``i`` with negatives ``j`` (cosine similarities ``s_ij`` of the unit embeddings, not
divided by T), ``lambda_i`` estimates the ``(1 - alpha)`` quantile of ``{s_ij}`` over the whole
dataset, as the minimiser of the quantile (top-alpha) objective

    F_i(lambda) = alpha * lambda + E_j [ (s_ij - lambda)_+ ],

whose stochastic gradient on a batch is ``g_i = alpha - (1/|N_i|) sum_{j in N_i} 1[s_ij > lambda_i]``.
Negatives with ``s_ij > lambda_i`` are the detected false negatives; they leave the negative set
through the masked kernel (objective ``elimination``). With ``loss="renormalised"`` (the official
loss, ``unimodal/sogclr/builder.py`` line 238) the kept negatives are rescaled to the full count,

    loss_i = -l_ip + log( e^{l_ip} + |N_i| / |K_i| * sum_{j in K_i} e^{l_ij} ),

``N_i`` the anchor's negatives, ``K_i`` those kept: the kernel sees the kept negatives' logits shifted by
the constant ``log(|N_i| / |K_i|)`` (:meth:`GloFNDDetector.loss_logits`). An anchor that keeps no
negative gets no shift (its loss is 0; the official code divides 0 by 0). ``loss="elimination"``
drops the detected negatives and rescales nothing, IFND's Eq. 3.

Update rule, as the authors' code (github vibalcam/GloFND, ``unimodal/sogclr/fnd.py``,
``LambdaThreshold.update`` and ``get_mask``):

* ``lambda`` starts at 1 for every sample (nothing detected); per-sample Adam with beta1 = 0.9,
  beta2 = 0.98, eps = 1e-8 and bias correction, then clipping to [-1, 1]:
  ``m_i <- b1 m_i + (1-b1) g_i``, ``v_i <- b2 v_i + (1-b2) g_i^2``,
  ``lambda_i <- clip(lambda_i - lr * m_i/(1-b1^t) / (sqrt(v_i/(1-b2^t)) + eps), -1, 1)``
  with ``t = epoch + 1`` (0-based epoch), as the official code (``fnd.py`` lines 129, 144-145): the
  bias correction counts epochs since the start of training, not the sample's own updates, so at
  the start epoch 70 the first step is about ``0.62 lr`` (``1 - b2^71 = 0.76``), not ``lr``.
* When one sample is several anchors of a batch (SimCLR's two views), its gradient pools the
  indicators of all its anchor rows (official: ``sim`` of both views stacked and averaged).
* The threshold is updated first and the mask uses the updated value (official order).
* Before ``start_epoch`` nothing is removed and nothing is learned: the authors' scripts set
  ``start_update = lda_start`` (``unimodal/scripts/train_single.sh`` lines 14-15; ``fnd.py`` lines
  73-74 skip the update, 229 the mask). Defaults from the authors' README (ImageNet-100, 200
  epochs): alpha = 0.01, lr = 0.05, start epoch 70.

Cost: the state is four vectors of length N (memory O(N)); a step reads and writes only the batch's
anchors' entries (cost independent of N). Under DDP each process updates its own anchors and the
updated entries are all-gathered so every process holds the same thresholds (the official code syncs
the same entries once per epoch in ``dist_update_params``).

The detector learns the epoch from ``refresh`` (called after every epoch; it costs nothing, no
features are computed).
"""
from __future__ import annotations

import torch

from ifnd.distributed import gather, is_distributed
from ifnd.falseneg.base import ContrastiveBatch, Detector, DetectorSpec, FeatureFn
from ifnd.pairs import Pairs

BETA1, BETA2, EPS = 0.9, 0.98, 1e-8
GLOFND_LOSSES = ("renormalised", "elimination")


class GloFNDDetector(Detector):
    name = "glofnd"

    def __init__(self, num_samples: int, alpha: float = 0.01, lr: float = 0.05, start_epoch: int = 70,
                 loss: str = "renormalised"):
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"glofnd_alpha={alpha} must be in (0, 1): the fraction of each anchor's negatives "
                             "treated as false negatives (GloFND: 0.01)")
        if not lr > 0:
            raise ValueError(f"glofnd_lr={lr} must be positive (GloFND: 0.05)")
        if loss not in GLOFND_LOSSES:
            raise ValueError(f"unknown glofnd_loss {loss!r}: choose one of {', '.join(GLOFND_LOSSES)}")
        self.alpha, self.lr, self.start_epoch, self.loss = alpha, lr, start_epoch, loss
        self.lam = torch.ones(num_samples)
        self.m = torch.zeros(num_samples)
        self.v = torch.zeros(num_samples)
        self.t = torch.zeros(num_samples, dtype=torch.long)
        self.epoch = 0

    def _to(self, device) -> None:
        if self.lam.device != torch.device(device):
            self.lam, self.m, self.v, self.t = (x.to(device) for x in (self.lam, self.m, self.v, self.t))

    # -- epochs -------------------------------------------------------------------------------
    def refresh_due(self, epochs_done: int, total_epochs: int) -> bool:
        return epochs_done < total_epochs

    def refresh(self, epochs_done: int, total_epochs: int, features: FeatureFn) -> dict:
        self.epoch = epochs_done
        seen = self.t > 0
        return {"glofnd_lambda_mean": float(self.lam[seen].mean()) if seen.any() else 1.0,
                "glofnd_active": float(self.active)}

    @property
    def active(self) -> bool:
        return self.epoch >= self.start_epoch

    # -- thresholds ---------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, similarity: torch.Tensor, negative: torch.Tensor, anchor_index: torch.Tensor) -> None:
        """One stochastic Adam step on the thresholds of the anchors' samples."""
        self._to(similarity.device)
        samples, row_sample = anchor_index.unique(return_inverse=True)
        above = ((similarity > self.lam[anchor_index][:, None]) & negative).sum(1).float()
        count = negative.sum(1).float()
        above = torch.zeros(len(samples), device=similarity.device).index_add_(0, row_sample, above)
        count = torch.zeros(len(samples), device=similarity.device).index_add_(0, row_sample, count)
        has = count > 0
        samples, grad = samples[has], self.alpha - above[has] / count[has]
        t = self.t[samples] + 1  # each sample's updates (for the log); the bias correction counts epochs
        m = BETA1 * self.m[samples] + (1 - BETA1) * grad
        v = BETA2 * self.v[samples] + (1 - BETA2) * grad ** 2
        m_hat = m / (1 - BETA1 ** (self.epoch + 1))
        v_hat = v / (1 - BETA2 ** (self.epoch + 1))
        lam = (self.lam[samples] - self.lr * m_hat / (v_hat.sqrt() + EPS)).clamp(-1.0, 1.0)
        if is_distributed():  # every process writes every process's updated entries
            samples, lam, m, v, t = self._gather_updates(samples, lam, m, v, t)
        self.lam[samples], self.m[samples], self.v[samples], self.t[samples] = lam, m, v, t

    @staticmethod
    def _gather_updates(samples, *values):
        count = gather(torch.tensor([samples.numel()], device=samples.device))
        width = int(count.max())
        pad = width - samples.numel()
        padded = [torch.cat([samples, samples.new_full((pad,), -1)])]
        padded += [torch.cat([x, x.new_zeros(pad)]) for x in values]
        gathered = [gather(x) for x in padded]
        keep = gathered[0] >= 0
        return [x[keep] for x in gathered]

    def false_negatives(self, batch: ContrastiveBatch) -> Pairs | None:
        if not self.active:
            return None
        similarity = batch.logits.detach().float() * batch.temperature
        negative = batch.valid.clone()
        negative[batch.positive.anchor, batch.positive.candidate] = False
        self.update(similarity, negative, batch.anchor_index)
        return Pairs.from_mask(self.detects(similarity, batch.anchor_index) & negative)

    def detects(self, similarity: torch.Tensor, anchor_index: torch.Tensor) -> torch.Tensor:
        """Similarities above the anchor sample's threshold (nothing before ``start_epoch``)."""
        if not self.active:
            return torch.zeros_like(similarity, dtype=torch.bool)
        self._to(similarity.device)
        return similarity > self.lam[anchor_index][:, None]

    def loss_logits(self, batch: ContrastiveBatch, excluded: Pairs | None) -> torch.Tensor:
        """The logits with each anchor's kept negatives shifted by ``log(|N_i| / |K_i|)`` (``loss="renormalised"``)."""
        if self.loss != "renormalised" or excluded is None or not len(excluded):
            return batch.logits
        anchors = batch.logits.shape[0]
        negatives = batch.valid.sum(1) - torch.bincount(batch.positive.anchor, minlength=anchors)
        kept = negatives - torch.bincount(excluded.anchor, minlength=anchors)
        shift = torch.where(kept > 0, negatives / kept.clamp_min(1), 1.0).log()
        offset = shift[:, None].expand(batch.logits.shape).clone()  # excluded and invalid entries are masked anyway
        offset[batch.positive.anchor, batch.positive.candidate] = 0.0
        return batch.logits + offset

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"lambda": self.lam.cpu().clone(), "m": self.m.cpu().clone(), "v": self.v.cpu().clone(),
                "t": self.t.cpu().clone(), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        device = self.lam.device
        self.lam, self.m, self.v, self.t = (state[k].to(device).clone() for k in ("lambda", "m", "v", "t"))
        self.epoch = state["epoch"]


def config_problem(cfg) -> str | None:
    if not 0.0 < cfg.glofnd_alpha < 1.0:
        return (f"glofnd_alpha={cfg.glofnd_alpha} must be in (0, 1): the fraction of each anchor's negatives "
                "treated as false negatives (GloFND: 0.01)")
    if not cfg.glofnd_lr > 0:
        return f"glofnd_lr={cfg.glofnd_lr} must be positive (GloFND: 0.05)"
    if not 0 <= cfg.glofnd_start_epoch < cfg.epochs:
        return (f"glofnd_start_epoch={cfg.glofnd_start_epoch} must be in [0, epochs={cfg.epochs}): before it "
                "nothing is removed, so GloFND would never act; lower --glofnd-start-epoch (GloFND: 70 of 200 epochs)")
    return None


SPEC = DetectorSpec(
    "glofnd", lambda cfg, true_labels: GloFNDDetector(true_labels.shape[0], cfg.glofnd_alpha, cfg.glofnd_lr,
                                                      cfg.glofnd_start_epoch, cfg.glofnd_loss),
    "GloFND (Balmaseda et al., 2025): a learned similarity threshold per sample",
    label_based=False, fields=("glofnd_alpha", "glofnd_lr", "glofnd_start_epoch", "glofnd_loss"), check=config_problem)
