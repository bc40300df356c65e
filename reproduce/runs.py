"""What a run is, and its identity: a hash of its resolved config.

* :class:`TrainRun`: one pre-training run, a resolved :class:`ifnd.config.TrainConfig` (without its
  ``run_dir``, which is derived from the hash) plus the epochs whose checkpoints it keeps.
* :class:`EvalRun`: one evaluation of a train run's checkpoint (``kind`` names the protocol in
  :mod:`reproduce.evals`), keyed by its parameters and the train run's hash.
* :class:`NotRun`: a run a profile cannot do (missing data, a method the library does not have
  yet), with the reason the table prints.

The hash covers every TrainConfig field the profile sets (profiles set every field that matters
explicitly, see :mod:`reproduce.profiles`) and every other field that differs from its default, so
adding a new field to TrainConfig (with a default) does not invalidate finished runs, a method
that sets a field to its default value is the same run as one that leaves it alone (Table 7's
IFND row is Table 5's IFND run), and any change a run actually sees gives a new hash. Fields that only
say how a machine runs it (:data:`ifnd.config.MACHINE_FIELDS`: ``run_dir``, ``threads``, ``device``,
``data_root``, ...) are not part of the identity: the same run on a laptop and on a cluster is the
same run. A detector recorded under other fields before it had a name of its own (PCL: detector
``ifnd`` with objective ``protonce``) is hashed under those (:func:`ifnd.config.recorded_fields`),
so its committed runs keep their keys.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from ifnd.config import DETECTORS, MACHINE_FIELDS, TrainConfig, defining_fields, recorded_fields

HASH_LENGTH = 16
_DEFAULTS = TrainConfig().to_dict()


def digest(payload) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


@dataclass(frozen=True)
class NotRun:
    """A cell the profile cannot fill; ``reason`` is printed in the table."""

    reason: str

    @property
    def key(self) -> str:
        return "not-run:" + digest(self.reason)


@dataclass(eq=False)
class TrainRun:
    config: TrainConfig               # built and validated once, by reproduce.specs.base.pretrain
    explicit: frozenset               # fields set by the profile or the spec (always hashed)
    snapshots: tuple = ()             # epochs whose checkpoints are kept (besides the last)
    label: str = ""

    def identity(self) -> dict:
        kept = {k: v for k, v in sorted(defining_fields(recorded_fields(self.config.to_dict())).items())
                if k in self.explicit or v != _DEFAULTS.get(k, object())}
        return {"kind": "train", "config": kept, "snapshots": list(self.snapshots)}

    @property
    def key(self) -> str:
        return digest(self.identity())

    def summary(self) -> str:
        c = self.config
        method = f"{c.framework}/{c.detector}/{c.objective}"
        subset = f" subset={c.train_subset}" if c.train_subset else ""
        owned = DETECTORS[c.detector].fields
        extra = f" {c.acceptance_scheme} {c.acceptance_initial}->{c.acceptance_final}" \
            if "acceptance_scheme" in owned else ""
        if "cluster_numbers" in owned:
            extra += f" k={c.cluster_numbers} conf={c.confidence}"
        if c.label_corruption:
            extra += f" corrupted={c.label_corruption:g}"
        if c.label_map is not None:
            extra += f" classes={len(set(c.label_map))}"
        return (f"{self.label or method}: {c.dataset} {c.arch} {method}{extra} "
                f"epochs={c.epochs} batch={c.batch_size} lr={c.lr}{subset} seed={c.seed}")

    def train_config(self, run_dir: str, **machine) -> TrainConfig:
        """The run's config with this machine's fields (they are not part of its identity)."""
        unknown = set(machine) - set(MACHINE_FIELDS)
        if unknown:
            raise ValueError(f"{sorted(unknown)} define a run; only {MACHINE_FIELDS} may differ per machine")
        return dataclasses.replace(self.config, run_dir=run_dir, **machine)


@dataclass(eq=False)
class EvalRun:
    kind: str                         # a protocol of reproduce.evals
    train: TrainRun
    params: dict = field(default_factory=dict)
    label: str = ""
    machine: dict = field(default_factory=dict)  # where the data is on this machine: not part of the identity

    def identity(self) -> dict:
        return {"kind": self.kind, "train": self.train.key, "params": self.params}

    @property
    def key(self) -> str:
        return digest(self.identity())

    def summary(self) -> str:
        shown = {k: v for k, v in self.params.items() if k not in ("label_map",)}
        return f"{self.kind} of {self.train.key} {json.dumps(shown, sort_keys=True)}"


Run = TrainRun | EvalRun
