"""The trainer: ``python -m ifnd.train --help``.

A run directory (:mod:`ifnd.rundir`) holds ``config.json``, ``metrics.jsonl`` (one line per epoch),
``checkpoints/last.pt`` (written atomically after every epoch) and ``final.json`` (written
atomically when the run ends). ``--resume`` continues from the last checkpoint; since the data
order and the augmentations of epoch ``e`` come from generators seeded by ``(seed, e)``, a
resumed run replays exactly what an uninterrupted one would have done. The command line never
overwrites a run directory (:func:`choose_run_dir`) and answers Ctrl-C with the command that resumes.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from ifnd import augment as aug, fused_loss
from ifnd.config import MODES, ConfigError, TrainConfig, check_resumable, config_from_args
from ifnd.data import source_identity
from ifnd.distributed import (average_gradients, broadcast_object, gather, gather_rows, init_from_environment,
                              rank, shard, world_size)
from ifnd.falseneg import build_detector
from ifnd.frameworks import build_framework
from ifnd.io import (append_jsonl, atomic_torch_save, atomic_write_json, atomic_write_jsonl, read_jsonl,
                     writable_dir)
from ifnd.metrics import knn_accuracy, mtpr_mtnr, nmi
from ifnd.rundir import CHECKPOINT, CONFIG, FINAL, METRICS, RunDir
from ifnd.optim import build_optimizer
from ifnd.sources import build_source


class TrainingDiverged(RuntimeError):
    pass


class FeatureBank:
    """Each training sample's unit projection ``z`` from its latest training step (``cluster_features=bank``).

    Clustering these instead of a separate pass over the training set makes a refresh cost only
    k-means (``benchmarks/gpu.py``: 6.6% -> 0.3% of training time at ImageNet scale). The rows
    come from training views of an encoder that moved during the epoch, not from the evaluation
    transform at the epoch's end as in the paper. Every rank keeps the whole bank (float16).
    """

    def __init__(self, size: int, device: torch.device):
        self.features: torch.Tensor | None = None
        self.filled = torch.zeros(size, dtype=torch.bool, device=device)

    def update(self, index: torch.Tensor, z: torch.Tensor) -> None:
        index, z = gather(index), gather(z.float())
        if self.features is None:
            self.features = torch.zeros(len(self.filled), z.shape[1], dtype=torch.float16, device=z.device)
        self.features[index] = z.to(torch.float16)
        self.filled[index] = True

    def complete(self) -> bool:
        """Whether every sample has a row (not yet, e.g., after one epoch that dropped its last partial batch)."""
        return self.features is not None and bool(self.filled.all())

    def state_dict(self) -> dict:
        return {"features": None if self.features is None else self.features.cpu(), "filled": self.filled.cpu()}

    def load_state_dict(self, state: dict) -> None:
        device = self.filled.device
        self.features = None if state["features"] is None else state["features"].to(device)
        self.filled = state["filled"].to(device)


def training_labels(cfg: TrainConfig, labels: torch.Tensor) -> torch.Tensor:
    """The true labels seen by true-label detectors, after ``label_map`` (e.g. a WordNet depth)."""
    if cfg.label_map is None:
        return labels
    label_map = torch.as_tensor(cfg.label_map)
    if label_map.numel() <= int(labels.max()):
        raise ConfigError(f"label_map has {label_map.numel()} entries but the data has "
                          f"{int(labels.max()) + 1} classes: give one new label per original class")
    return label_map[labels]


def learning_rate(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine decay to ``lr_final`` (App. C, CIFAR; SwAV) or x0.1 at ``lr_steps`` (App. C, ImageNet)."""
    epoch = step / steps_per_epoch
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (step + 1) / (cfg.warmup_epochs * steps_per_epoch)
    if cfg.lr_schedule == "step":
        return cfg.lr * 0.1 ** sum(epoch >= milestone for milestone in cfg.lr_steps)
    progress = (epoch - cfg.warmup_epochs) / (cfg.epochs - cfg.warmup_epochs)
    return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))


def resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but no GPU is visible: use --device cpu or auto")
    return torch.device(cfg.device)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]


def slow_precision_warning(dtype: torch.dtype | None, device: torch.device) -> str | None:
    """Why bf16 on this CPU will be slow, or None. Without oneDNN's bf16 kernels (AVX-512) PyTorch
    runs bf16 convolutions on a generic GEMM: on an AVX2 CPU the mini step took 9x the fp32 time
    (docs/performance.md §6)."""
    if dtype is not torch.bfloat16 or device.type != "cpu" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    return (f"warning: amp=bf16 on this CPU ({torch.backends.cpu.get_cpu_capability()}: no oneDNN bf16 kernels) "
            "trains about 10x slower than fp32 (python -m benchmarks.precision measures it); amp off is faster here "
            "(--amp off; --set amp=off in the harness) but is a different run, not the committed bf16 results")


class Trainer:
    """One pre-training run of a framework with a false-negative detector."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.validate()
        self.run_dir = Path(cfg.run_dir)
        self.files = RunDir(self.run_dir)
        init_from_environment()
        if cfg.batch_size % world_size():
            raise ConfigError(f"batch_size={cfg.batch_size} does not split over {world_size()} processes: "
                              "use a multiple of the number of processes (it is the global batch)")
        self.local_batch = cfg.batch_size // world_size()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg)
        self.amp = autocast_dtype(cfg, self.device)
        if rank() == 0 and (warning := slow_precision_warning(self.amp, self.device)):
            print(warning, file=sys.stderr, flush=True)
        if cfg.loss_kernel == "fused" and not fused_loss.available(self.device):
            raise ConfigError(f"loss_kernel='fused' runs Triton kernels on a CUDA device, not on {self.device}"
                              f"{'' if fused_loss.triton else ' (and triton is not installed)'}: use --loss-kernel pairs")
        self.model = build_framework(cfg).to(self.device)
        self.augment = aug.AugmentConfig(size=cfg.image_size, scale=(cfg.crop_scale_min, 1.0))
        self.source = build_source(cfg, self.device, self.model.view_specs(self.augment))
        self.detector = build_detector(cfg, training_labels(cfg, self.source.labels))
        self.optimizer = build_optimizer(cfg, self.model.parameters())
        self.scaler = torch.amp.GradScaler(enabled=self.amp is torch.float16)
        self.bank = FeatureBank(len(self.source), self.device) if cfg.cluster_features == "bank" else None
        self.steps_per_epoch = len(self.source) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size={cfg.batch_size} exceeds the {len(self.source)} training samples: "
                              "lower --batch-size or use more data")
        self.epoch = 0

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"config": self.cfg.to_dict(), "epoch": self.epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "detector": self.detector.state_dict(), "torch_rng": torch.get_rng_state(),
                "bank": None if self.bank is None else self.bank.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.detector.load_state_dict(state["detector"])
        if self.bank is not None:
            self.bank.load_state_dict(state["bank"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.epoch = state["epoch"]

    def resume(self) -> bool:
        path = self.files.checkpoint
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        check_resumable(state["config"], self.cfg, path)
        self.load_state_dict(state)
        # metrics.jsonl may hold epochs after the checkpoint if the run died between the two writes.
        kept = [r for r in read_jsonl(self.files.metrics) if r["epoch"] <= self.epoch]
        atomic_write_jsonl(self.files.metrics, kept)
        return True

    # -- features ----------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, split: str, which: str) -> torch.Tensor:
        """Backbone (``which='backbone'``) or projection features of a split, evaluation transform.

        Under DDP each rank embeds a contiguous shard and the shards are gathered.
        """
        self.model.eval()
        total = len(self.source.labels if split == "train" else self.source.test_labels)
        net = self.model.backbone if which == "backbone" else self.model.embed
        with self._autocast():
            out = [net(x).float() for x in self.source.eval_batches(split, shard(total))]
        self.model.train()
        return gather_rows(torch.cat(out), total)

    def _autocast(self):
        if self.amp is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    # -- training ----------------------------------------------------------------------------
    def train_epoch(self) -> dict:
        cfg, epoch = self.cfg, self.epoch
        order_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        # The same on every process: each draws the global batch's augmentations and keeps its rows.
        aug_gen = torch.Generator(device=self.device).manual_seed((cfg.seed * 1_000_003 + epoch) * 1009)
        order = torch.randperm(len(self.source), generator=order_gen)
        self.model.set_epoch(epoch)
        total, start = 0.0, time.perf_counter()
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=None if cfg.progress and rank() == 0 else True, file=sys.stderr)  # None: a terminal only
        steps = (order[step * cfg.batch_size + rank() * self.local_batch:][:self.local_batch]
                 for step in range(self.steps_per_epoch))
        rows = (rank() * self.local_batch, cfg.batch_size)
        views_fn = lambda raw, gen: self.model.views(raw, self.augment, self.source.mean, self.source.std, gen, rows)
        for step, (index, views) in zip(bar, self.source.epoch(steps, views_fn, aug_gen)):
            lr = learning_rate(cfg, epoch * self.steps_per_epoch + step, self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self._autocast():
                loss = self.model.training_loss(views, index, self.detector, cfg.objective, cfg.temperature,
                                                cfg.loss_kernel)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}: training stopped; the last "
                    f"good checkpoint (after epoch {epoch}) is kept in {self.files.checkpoint}. Lower --lr, "
                    "raise --temperature or turn off --amp fp16")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            average_gradients(self.model.parameters())
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.model.after_step()
            if self.bank is not None:
                self.bank.update(*self.model.last_embedding)
            total += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        seconds = time.perf_counter() - start
        images = self.steps_per_epoch * cfg.batch_size
        return {"loss": total / self.steps_per_epoch, "lr": lr, "epoch_seconds": seconds,
                "images_per_second": images / seconds}

    def refresh_detector(self) -> dict:
        cfg = self.cfg
        from_bank = self.bank is not None and self.bank.complete()

        def features() -> torch.Tensor:
            return self.bank.features.float() if from_bank else self.features("train", cfg.cluster_on)

        record = self.detector.refresh(self.epoch, cfg.epochs, features)
        if self.bank is not None:
            record["features_from_bank"] = from_bank
        self.detector.load_state_dict(broadcast_object(self.detector.state_dict()))  # one labelling for all ranks
        labels = self.detector.level_labels()
        if labels is not None and "acceptance_rate" in record:
            truth = self.source.labels.numpy()
            for k, level in zip(cfg.cluster_numbers, labels):
                record[f"mtpr_k{k}"], record[f"mtnr_k{k}"] = mtpr_mtnr(level.cpu().numpy(), truth)
            for k, assignment in zip(cfg.cluster_numbers, self.detector.cluster_assignments()):
                record[f"nmi_k{k}"] = nmi(truth, assignment.numpy())
        return record

    def knn(self) -> float:
        train, test = self.features("train", "backbone"), self.features("test", "backbone")
        return knn_accuracy(train, self.source.labels.to(self.device), test,
                            self.source.test_labels.to(self.device), k=self.cfg.knn_k)

    def run(self, resume: bool = False) -> dict:
        """Train to ``cfg.epochs``; ``checkpointed`` always holds the epoch ``checkpoints/last.pt`` is at."""
        cfg = self.cfg
        writable_dir(self.run_dir)
        if resume and self.resume():
            if rank() == 0:
                print(f"resumed from epoch {self.epoch} of {cfg.epochs} ({self.files.checkpoint})", file=sys.stderr,
                      flush=True)
        elif rank() == 0:
            atomic_write_json(self.files.config, cfg.to_dict())
            self.files.metrics.unlink(missing_ok=True)
        self.checkpointed = self.epoch
        last = None  # this process's last record: ranks > 0 must not read metrics.jsonl, which rank 0 writes
        while self.epoch < cfg.epochs:
            record = {"epoch": self.epoch + 1, **self.train_epoch()}
            self.epoch += 1
            if self.detector.refresh_due(self.epoch, cfg.epochs):
                record.update(self.refresh_detector())
            if self.epoch == cfg.epochs or (cfg.knn_every and self.epoch % cfg.knn_every == 0):
                record["knn_top1"] = self.knn()
            if rank() == 0:
                append_jsonl(self.files.metrics, record)
                atomic_torch_save(self.files.checkpoint, self.state_dict())
            self.checkpointed = self.epoch
            if rank() == 0:
                print(format_record(record, cfg.epochs, self.run_dir), file=sys.stderr, flush=True)
            last = record
        last = last or read_jsonl(self.files.metrics)[-1]  # a resumed run that had finished
        final = {"epochs": cfg.epochs, "knn_top1": last["knn_top1"],
                 "checkpoint": CHECKPOINT, "data": source_identity(cfg.dataset, cfg.data_root)}
        if rank() == 0:
            atomic_write_json(self.files.final, final)
        return final


def format_record(record: dict, epochs: int, run_dir: Path) -> str:
    """One plain log line per epoch: loss, lr, images/s, time, then what the epoch added (refresh, kNN)."""
    shown = {"epoch", "loss", "lr", "images_per_second", "epoch_seconds"}
    rest = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                     if k not in shown)
    return (f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f}  lr {record['lr']:.4g}  "
            f"{record['images_per_second']:.0f} images/s  {record['epoch_seconds']:.1f}s"
            + (f"  {rest}" if rest else "") + f"  [{run_dir}]")


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    return Trainer(cfg).run(resume=resume)


RUN_FILES = (CONFIG, METRICS, CHECKPOINT, FINAL)


def _gave_flag(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def choose_run_dir(cfg: TrainConfig, resume: bool, argv: list[str]) -> TrainConfig:
    """The run directory policy of the command line: never overwrite a run, never start fresh silently.

    Without ``--run-dir`` (and no ``run_dir`` in ``--config``) a new run gets ``runs/<method>-<time>``;
    an existing run directory needs ``--resume``; ``--resume`` needs a directory that holds a run.
    """
    run_dir = Path(cfg.run_dir)
    if run_dir == Path(TrainConfig.run_dir) and not _gave_flag(argv, "--run-dir") and not _gave_flag(argv, "--config"):
        if resume:
            raise ConfigError("--resume needs the run to continue: add --run-dir RUN_DIR (and --config "
                              "RUN_DIR/config.json)")
        mode = next((m for m, fields in MODES.items() if (fields["detector"], fields["objective"]) ==
                     (cfg.detector, cfg.objective)), f"{cfg.detector}-{cfg.objective}")
        stem = f"runs/{cfg.framework}-{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = next(d for d in (Path(stem + suffix) for suffix in ["", *(f"-{n}" for n in range(2, 1000))])
                       if not d.exists())
        cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if resume and not RunDir(run_dir).config.exists():
        raise ConfigError(f"nothing to resume in {run_dir} (no config.json): check --run-dir, or drop --resume to "
                          "start a new run there")
    if not resume and held:
        raise ConfigError(f"{run_dir} already holds a run ({', '.join(held)}): continue it with --resume, or choose "
                          "a new --run-dir (nothing was overwritten)")
    return cfg


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    trainer = cfg = None
    try:
        cfg, resume = config_from_args(argv)
        cfg = choose_run_dir(cfg, resume, argv)
        if resume and not RunDir(cfg.run_dir).checkpoint.exists():
            print(f"no checkpoint in {cfg.run_dir} yet (stopped during its first epoch): starting from epoch 0",
                  file=sys.stderr)
        trainer = Trainer(cfg)
        final = trainer.run(resume=resume)
    except (ConfigError, TrainingDiverged, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(cfg, trainer), file=sys.stderr)
        return 130
    print(f"finished: kNN top-1 {final['knn_top1']:.2f}% -> {RunDir(cfg.run_dir).final}")
    return 0


def interrupted_message(cfg: TrainConfig | None, trainer: Trainer | None) -> str:
    epoch = getattr(trainer, "checkpointed", None)
    if cfg is None or trainer is None or not epoch:
        return "\ninterrupted before the first epoch finished: nothing to resume" + (
            f"; {cfg.run_dir} can be deleted or reused with --resume" if cfg and Path(cfg.run_dir).exists() else "")
    files = RunDir(cfg.run_dir)
    return (f"\ninterrupted: {files.checkpoint} holds epoch {epoch} of {cfg.epochs}; "
            f"`python -m ifnd.train --run-dir {cfg.run_dir} --config {files.config} --resume` "
            f"continues from epoch {epoch}")


if __name__ == "__main__":
    sys.exit(main())
