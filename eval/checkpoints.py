"""Read a pre-trained backbone out of any checkpoint the protocols are run on.

Three layouts are understood, all written by ``torch.save``:

* ``ifnd``: our trainer's ``{"config": {"arch", "cifar_stem", ...}, "epoch", "model": state_dict}``;
  backbone keys are ``encoder.backbone.<torchvision name>`` (an optional ``module.`` prefix from
  DDP is dropped); the projection head ``encoder.head.*`` and anything else is ignored.
* ``moco``: official MoCo / MoCo v2 / PCL releases, ``{"state_dict": {"module.encoder_q.<name>"}, "arch"}``;
  the ``fc`` projection is dropped exactly as MoCo's ``main_lincls.py`` does.
* ``torchvision``: a bare backbone state dict (e.g. torchvision's supervised ResNet-50, the
  "Supervise" row of Table 3), optionally under ``"state_dict"``; ``fc.*`` is dropped.

The architecture (``resnet50`` / ``resnet18`` / ``convnet4``) and the stem (ImageNet 7x7 or
CIFAR 3x3 ``conv1``) are read from the weights' shapes and must agree with what the caller asks
for and with the checkpoint's own config; the weights are then loaded with ``strict=True``.
Every failure is a :class:`CheckpointError` that names the file, the problem and the fix.

:func:`load_framework` rebuilds the whole trained model (backbone and projection head) of our
trainer's checkpoint, for evaluations of the projection space (t-SNE, :mod:`eval.tsne`).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ifnd.models import BACKBONES, build_backbone
from ifnd.rundir import CHECKPOINT, RunDir


class CheckpointError(ValueError):
    """A checkpoint that cannot give the requested backbone, with the reason and the fix."""


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a backbone came from; goes into every result JSON and every feature-cache key."""

    path: str
    sha256: str
    source_format: str  # "ifnd", "moco" or "torchvision"
    arch: str
    cifar_stem: bool
    epoch: int | None = None
    config: dict | None = field(default=None, compare=False)

    def summary(self) -> dict:
        """The JSON-friendly description written into result files (without the full config)."""
        out = asdict(self)
        out.pop("config")
        return out


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike, trusted: bool = False) -> dict:
    """``torch.load`` on CPU with the safe (tensors and plain containers only) unpickler.

    ``trusted=True`` allows arbitrary pickled objects (e.g. an ``argparse.Namespace`` saved by
    third-party code); only use it for files whose origin you trust.
    """
    path = Path(path)
    if not path.is_file():
        hint = (f"it is a directory; point at the checkpoint file inside it (a run directory's latest is "
                f"{RunDir(path).checkpoint})" if path.is_dir() else
                f"check the path (our trainer writes <run_dir>/{CHECKPOINT})")
        raise CheckpointError(f"checkpoint {path} does not exist as a file: {hint}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL (\S+)", str(err))
        if refused is None:  # not a refused class: the bytes themselves are not a pickle
            raise CheckpointError(f"cannot read checkpoint {path}: its bytes are not a torch.save file "
                                  "(damaged or another format); re-download or re-save it") from err
        raise CheckpointError(
            f"checkpoint {path} holds a Python object ({refused[1]}) that torch's safe loader refuses; if you "
            "trust where the file comes from, pass --trust-checkpoint (trusted=True) to unpickle it fully") from err
    except Exception as err:  # corrupt zip, truncated file, not a torch file at all
        raise CheckpointError(f"cannot read checkpoint {path} ({type(err).__name__}: {err}): it is not a "
                              "complete torch.save file; re-download or re-save it") from err
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(raw).__name__}, not a dict: expected our "
                              "trainer's {'config', 'model'} dict, MoCo's {'state_dict'} or a state dict")
    return raw


def _strip(prefix: str, state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _without_module(state: dict[str, Any]) -> dict[str, Any]:
    """Drop a leading DDP/DataParallel ``module.`` from every key that has one."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def backbone_state_dict(raw: dict, path: str | os.PathLike = "<checkpoint>") -> tuple[dict, str, dict]:
    """Split a loaded checkpoint into (backbone state dict, format name, declared metadata).

    Declared metadata holds what the file says about itself: ``arch``, ``cifar_stem``, ``epoch``,
    ``config`` (any may be absent).
    """
    if isinstance(raw.get("model"), dict) and isinstance(raw.get("config"), dict):
        config = raw["config"]
        state = _strip("encoder.backbone.", _without_module(raw["model"]))
        if not state:
            sample = ", ".join(list(raw["model"])[:4])
            raise CheckpointError(f"checkpoint {path} looks like our trainer's format but its 'model' has no "
                                  f"'encoder.backbone.*' keys (first keys: {sample}): was it written by "
                                  "another program?")
        declared = {"arch": config.get("arch"), "cifar_stem": config.get("cifar_stem"),
                    "epoch": raw.get("epoch"), "config": config}
        return state, "ifnd", declared
    weights = raw.get("state_dict", raw)
    if not isinstance(weights, dict) or not all(isinstance(k, str) for k in weights):
        raise CheckpointError(f"checkpoint {path} has no state dict: expected keys 'model' (our trainer), "
                              "'state_dict' (MoCo/PCL) or parameter names (torchvision)")
    declared = {"arch": raw.get("arch") if isinstance(raw.get("arch"), str) else None,
                "cifar_stem": None, "epoch": raw.get("epoch"), "config": None}
    unwrapped = _without_module(weights)
    query = _strip("encoder_q.", unwrapped)
    if query:
        return {k: v for k, v in query.items() if not k.startswith("fc.")}, "moco", declared
    tensors = {k: v for k, v in unwrapped.items() if isinstance(v, torch.Tensor) and not k.startswith("fc.")}
    if not tensors:
        raise CheckpointError(f"checkpoint {path} has no backbone tensors: expected our trainer's format, "
                              "MoCo/PCL's 'module.encoder_q.*' or a torchvision state dict")
    return tensors, "torchvision", declared


def infer_architecture(state: dict[str, torch.Tensor]) -> tuple[str, bool]:
    """(arch, cifar_stem) from parameter names and shapes; raises for unsupported networks."""
    if "features.0.weight" in state:
        return "convnet4", False
    if "conv1.weight" not in state or "layer3.0.conv1.weight" not in state:
        sample = ", ".join(list(state)[:4])
        raise CheckpointError(f"cannot recognise the backbone (first keys: {sample}): supported are "
                              f"{', '.join(BACKBONES)} with torchvision parameter names")
    blocks_in_layer3 = len({int(m.group(1)) for k in state if (m := re.match(r"layer3\.(\d+)\.", k))})
    bottleneck = "layer1.0.conv3.weight" in state
    arch = {(True, 6): "resnet50", (False, 2): "resnet18"}.get((bottleneck, blocks_in_layer3))
    if arch is None:
        kind = "bottleneck" if bottleneck else "basic-block"
        raise CheckpointError(f"the checkpoint holds a {kind} ResNet with {blocks_in_layer3} blocks in layer3, "
                              "which is neither resnet50 (bottleneck, 6) nor resnet18 (basic, 2): "
                              "only those are supported")
    return arch, state["conv1.weight"].shape[-1] == 3


def _stem_name(cifar_stem: bool) -> str:
    return "a CIFAR stem (3x3 conv1, no max-pool)" if cifar_stem else "the ImageNet stem (7x7 conv1 + max-pool)"


def _check_request(path, detected: tuple[str, bool], wanted_arch, wanted_stem, source: str) -> None:
    arch, stem = detected
    if wanted_arch is not None and wanted_arch != arch:
        raise CheckpointError(f"checkpoint {path} holds a {arch} backbone but {wanted_arch} was {source}: "
                              f"use --arch {arch} or the checkpoint of a {wanted_arch} run")
    if wanted_stem is not None and arch != "convnet4" and bool(wanted_stem) != stem:
        raise CheckpointError(f"checkpoint {path} holds a {arch} with {_stem_name(stem)} but {_stem_name(wanted_stem)} "
                              f"was {source}: drop the stem option or use a matching checkpoint")


def _describe_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{name}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
             for name, items in (("missing", missing), ("unexpected", unexpected), ("shape (file vs model)", shapes))
             if items]
    return "; ".join(parts)


def load_backbone(path: str | os.PathLike, arch: str | None = None, cifar_stem: bool | None = None,
                  trusted: bool = False) -> tuple[nn.Module, CheckpointInfo]:
    """The frozen-ready backbone (eval mode, CPU) and its :class:`CheckpointInfo`.

    ``arch`` / ``cifar_stem`` left as ``None`` are taken from the weights; given, they must match.
    """
    if arch is not None and arch not in BACKBONES:
        raise CheckpointError(f"unknown architecture {arch!r}: choose one of {', '.join(BACKBONES)}")
    raw = read_checkpoint(path, trusted)
    state, source_format, declared = backbone_state_dict(raw, path)
    detected = infer_architecture(state)
    _check_request(path, detected, declared["arch"], declared["cifar_stem"], "declared in the checkpoint itself")
    _check_request(path, detected, arch, cifar_stem, "asked for")
    model = build_backbone(*detected)
    problem = _describe_mismatch(model, state)
    if problem:
        raise CheckpointError(f"checkpoint {path} does not fit a {detected[0]} backbone ({problem}): "
                              "the file is damaged or from a modified network")
    model.load_state_dict(state, strict=True)
    model.eval()
    info = CheckpointInfo(path=str(Path(path).resolve()), sha256=file_sha256(path), source_format=source_format,
                          arch=detected[0], cifar_stem=detected[1],
                          epoch=int(declared["epoch"]) if isinstance(declared["epoch"], int) else None,
                          config=declared["config"])
    return model, info


def load_framework(path: str | os.PathLike, trusted: bool = False) -> tuple[nn.Module, dict]:
    """Our trainer's whole model (eval mode, CPU), rebuilt from the config inside the checkpoint, and the
    loaded checkpoint dict (``epoch``, ``config``, ``detector`` state, ...)."""
    from ifnd.config import ConfigError, TrainConfig
    from ifnd.frameworks import build_framework

    raw = read_checkpoint(path, trusted)
    if not (isinstance(raw.get("model"), dict) and isinstance(raw.get("config"), dict)):
        raise CheckpointError(f"checkpoint {path} is not our trainer's (no 'config' and 'model' entries): the whole "
                              f"model can only be rebuilt from a <run_dir>/{CHECKPOINT} or a snapshot of one")
    try:
        model = build_framework(TrainConfig.from_dict(raw["config"]))
    except (ConfigError, TypeError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} holds a config this version of ifnd cannot build ({err}): "
                              "evaluate it with the version that trained it") from err
    try:
        model.load_state_dict(raw["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit the model its own config builds ({err}): "
                              "the file is damaged or from another version of ifnd") from err
    return model.eval(), raw
