"""The true labels accepted under IFND's schedule (``--detector scheduled_labels``): IFND with its k-means
pseudo labels replaced by labels of a chosen quality.

It isolates what the quality of IFND's detection is worth: the labels are the true ones after the
run's ``label_map``, with ``label_corruption`` of the training samples given a wrong class
(:func:`ifnd.falseneg.base.corrupt_labels`), and everything else is IFND's: at each refresh (every
``refresh_every`` epochs) the fraction of IFND's acceptance schedule (the same ``acceptance_*``
fields) keeps its label, every other sample a label of its own, and the objective removes the
detected false negatives (Eq. 3 with ``--objective elimination``).

Which samples are accepted: IFND ranks by its confidence (Eq. 2); labels have none, so the ranking
is a random order fixed for the run (seeded by ``2 * seed + 1``), and the accepted set only grows.
Corruption and acceptance are independent draws, so the accepted samples are corrupted at the same
rate as the whole training set. The trainer logs MTPR / MTNR at each refresh as IFND's; it names the
one level after the first cluster number (``mtpr_k<cluster_numbers[0]>``), which this detector does
not use.
"""
from __future__ import annotations

import torch

from ifnd.falseneg.base import DetectorSpec, FeatureFn, corrupt_labels
from ifnd.falseneg.incremental import SCHEDULE_FIELDS, AcceptanceSchedule, ScheduledDetector, accept_top, schedule_of


class ScheduledLabelDetector(ScheduledDetector):
    name = "scheduled_labels"

    def __init__(self, labels: torch.Tensor, schedule: AcceptanceSchedule, refresh_every: int, seed: int = 0):
        self.given = torch.as_tensor(labels).long()
        self.classes = int(self.given.max()) + 1  # unaccepted samples get classes + index: never a class
        self.order = torch.rand(self.given.numel(), generator=torch.Generator().manual_seed(2 * seed + 1))
        super().__init__(self._accepted(0.0), schedule, refresh_every)

    def _accepted(self, rate: float) -> torch.Tensor:
        return accept_top(self.given, self.order, rate, self.classes).view(1, -1)

    def refresh(self, epochs_done: int, total_epochs: int, features: FeatureFn) -> dict:
        self.rate = self.schedule.rate(epochs_done, total_epochs)
        self.labels = self._accepted(self.rate)
        return {"acceptance_rate": self.rate}


SPEC = DetectorSpec(
    "scheduled_labels",
    lambda cfg, true_labels: ScheduledLabelDetector(corrupt_labels(true_labels, cfg.label_corruption, cfg.seed),
                                                    schedule_of(cfg), cfg.refresh_every, cfg.seed),
    "the true labels (label_corruption of them wrong) accepted under IFND's schedule: IFND with detection of a "
    "chosen quality", refreshes=True, fields=("label_corruption", *SCHEDULE_FIELDS))
