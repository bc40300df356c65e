"""Where the data sets are: a paths file, environment variables, and the project's defaults.

Precedence, for each data set: the environment variable, then ``[data]`` in the paths file
(``--paths FILE``, else ``$IFND_PATHS``, else ``reproduce/paths.toml`` when present; copy
``reproduce/paths.example.toml``), then the default (CIFAR-10 only: ``ifnd.data``'s
``../shared/data/cifar10-jpeg.tar.gz``). Nothing is downloaded. A missing data set is not an
error while rendering: cells whose records the store holds render from them, the others say
``not run: ImageNet not found at PATH``; only a run that must train or evaluate needs its data
(``python -m reproduce`` then stops and says how to get it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS_FILE = PROJECT_ROOT / "reproduce" / "paths.toml"

DATASETS = {  # key: (readable name, environment variable, expected layout)
    "cifar10": ("CIFAR-10", "IFND_DATA_ROOT", "cifar10-jpeg.tar.gz, its extracted folder or cifar-10-batches-py"),
    "cifar100": ("CIFAR-100", "IFND_CIFAR100", "torchvision's cifar-100-python folder"),
    "imagenet": ("ImageNet", "IFND_IMAGENET", "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG"),
    "imagenet_subsets": ("SimCLR's ImageNet label subsets", "IFND_IMAGENET_SUBSETS",
                         "a folder with 1percent.txt and 10percent.txt"),
    "voc07": ("VOC2007", "IFND_VOC07", "VOCdevkit/VOC2007/{JPEGImages,ImageSets/Main}"),
    "places205": ("Places205", "IFND_PLACES205", "data/vision/torralba/deeplearning/images256 and "
                                                 "trainvalsplit_places205/{train,val}_places205.csv"),
    "coco": ("COCO", "IFND_COCO", "train2017/, val2017/ and annotations/ (detectron2's DETECTRON2_DATASETS/coco)"),
}


class PathsError(ValueError):
    pass


class TomlError(ValueError):
    pass


def load_toml(path: Path) -> dict:
    """Parse a TOML file (Python 3.11's tomllib; on 3.10 the ``tomli`` package)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError as err:
            raise TomlError(f"reading {path} needs Python 3.11+ or `pip install tomli`") from err
    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as err:
        raise TomlError(f"{path} is not valid TOML ({err})") from err


@dataclass
class DataPaths:
    configured: dict[str, str] = field(default_factory=dict)
    source: str = "defaults"

    @classmethod
    def load(cls, paths_file: str | os.PathLike | None = None) -> "DataPaths":
        chosen = paths_file or os.environ.get("IFND_PATHS") or (DEFAULT_PATHS_FILE if DEFAULT_PATHS_FILE.exists()
                                                                 else None)
        configured: dict[str, str] = {}
        source = "defaults and environment"
        if chosen:
            path = Path(chosen).expanduser()
            if not path.is_file():
                raise PathsError(f"paths file {path} does not exist: copy reproduce/paths.example.toml there "
                                 "or drop --paths")
            try:
                data = load_toml(path)
            except TomlError as err:
                raise PathsError(f"paths file {err}") from err
            unknown = sorted(set(data.get("data", {})) - set(DATASETS))
            if unknown:
                raise PathsError(f"paths file {path} names unknown data sets {unknown}: valid are "
                                 f"{', '.join(DATASETS)}")
            base = path.parent
            configured = {k: str((base / Path(v).expanduser()) if not Path(v).expanduser().is_absolute()
                                 else Path(v).expanduser()) for k, v in data.get("data", {}).items() if v}
            source = str(path)
        return cls(configured, source)

    def raw(self, key: str) -> str | None:
        name, env, _ = DATASETS[key]
        if os.environ.get(env):
            return os.environ[env]
        if key in self.configured:
            return self.configured[key]
        if key == "cifar10":
            from ifnd.data import DEFAULT_CIFAR10

            return str(DEFAULT_CIFAR10)
        return None

    def locate(self, key: str) -> tuple[str | None, str | None]:
        """(path, None) when the data set is there, else (None, the reason to print in a table).

        Checks the layout's top level only (cheap: called for every run a table plans)."""
        name, env, layout = DATASETS[key]
        where = f"set {key} in [data] of reproduce/paths.toml or ${env}"
        path = self.raw(key)
        if path is None:
            return None, f"{name} not configured ({where})"
        if not Path(path).exists():
            return None, f"{name} not found at {path} ({where}; expected {layout})"
        problem = layout_problem(key, Path(path))
        if problem:
            return None, f"{name} at {path} {problem} ({where}; expected {layout})"
        return path, None

    def data_root(self, key: str) -> str | None:
        """The path to hand to the trainer (``None`` for the trainer's own CIFAR-10 default)."""
        path, _ = self.locate(key)
        if key == "cifar10" and path is not None:
            from ifnd.data import DEFAULT_CIFAR10

            if Path(path) == DEFAULT_CIFAR10 and not os.environ.get(DATASETS[key][1]) and key not in self.configured:
                return None
        return path


def _has_class_folders(folder: Path) -> bool:
    return folder.is_dir() and any(child.is_dir() for child in folder.iterdir())


def layout_problem(key: str, path: Path) -> str | None:
    """What is wrong with the top level of a data set's folder, or None."""
    if key == "cifar10" and path.is_dir():
        from ifnd.data import CIFAR10_ARCHIVE, holds_cifar10

        if not (holds_cifar10(path) or (path / CIFAR10_ARCHIVE).is_file()):
            return f"holds neither {CIFAR10_ARCHIVE} nor train/, cifar10-jpeg/ or cifar-10-batches-py/"
    if key == "imagenet":
        missing = [name for name in ("train", "val") if not _has_class_folders(path / name)]
        if missing:
            return "has no class folders under " + " and ".join(f"{name}/" for name in missing)
    return None
