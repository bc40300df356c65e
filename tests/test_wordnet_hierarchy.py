"""Tests of the WordNet-depth relabeling (paper Table 5)."""

from collections import Counter
from pathlib import Path

import pytest

import wordnet_hierarchy as wh
from wordnet_hierarchy.__main__ import main
from wordnet_hierarchy.build import render
from wordnet_hierarchy.wordnet_source import (
    WordNetUnavailableError,
    lexnames_text,
    prepare_corpus_dir,
)

ALL_DEPTHS = range(1, wh.MAX_DEPTH + 1)
WORDNET_INSTALLED = Path("/usr/share/wordnet/data.noun").is_file()
# The commonly used CIFAR-100 fine -> coarse array, an encoding independent of ours.
CIFAR100_COARSE_REFERENCE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]


def test_imagenet_counts_match_paper_table5():
    assert {d: wh.num_classes(d) for d in wh.PAPER_IMAGENET_COUNTS} == wh.PAPER_IMAGENET_COUNTS


def test_imagenet_wnids_standard_order():
    wnids = wh.imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids))
    assert wnids[0] == "n01440764" and wnids[-1] == "n15075141"
    assert wnids == sorted(wnids)


def test_max_depth_is_deepest_leaf():
    assert wh.load_hierarchy()["max_depth"] == wh.MAX_DEPTH


@pytest.mark.parametrize("dataset", wh.DATASETS)
def test_every_class_mapped_with_contiguous_labels(dataset):
    classes = wh.load_hierarchy()[dataset]["classes"]
    for depth in ALL_DEPTHS:
        labels, names = wh.relabel(classes, depth, dataset)
        assert len(labels) == len(classes)
        assert set(labels) == set(range(len(names)))
        assert len(names) == wh.num_classes(depth, dataset)
        assert len(set(names)) == len(names)
    assert wh.relabel(classes, wh.MAX_DEPTH, dataset)[0] == list(range(len(classes)))


@pytest.mark.parametrize("dataset", wh.DATASETS)
def test_coarser_depths_merge_finer_classes(dataset):
    classes = wh.load_hierarchy()[dataset]["classes"]
    for depth in range(1, wh.MAX_DEPTH):
        coarse = wh.relabel(classes, depth, dataset)[0]
        fine = wh.relabel(classes, depth + 1, dataset)[0]
        assert len({(f, c) for f, c in zip(fine, coarse)}) == len(set(fine))


def test_relabel_numbers_labels_by_first_appearance():
    cats = ["n02123159", "n02123045"]  # tiger cat, tabby
    assert wh.relabel(["n01440764", *cats], 10) == ([0, 1, 1], ["fish", "placental"])
    assert wh.relabel([*cats, "n01440764"], 10) == ([0, 0, 1], ["placental", "fish"])
    assert wh.relabel(cats[::-1], 18) == ([0, 1], ["tabby", "tiger cat"])


def test_relabel_rejects_unknown_class_and_depth():
    with pytest.raises(ValueError, match="unknown wnid n00000000"):
        wh.relabel(["n00000000"], 3)
    with pytest.raises(ValueError, match="depth must be an integer in 1..18"):
        wh.relabel(["n01440764"], 19)
    with pytest.raises(ValueError, match="unknown dataset"):
        wh.num_classes(3, "cifar1000")


def test_committed_file_is_canonically_rendered():
    text = wh.DATA_FILE.read_text(encoding="utf-8")
    assert render(wh.load_hierarchy()) + "\n" == text
    assert len(text.encode()) < 400_000


@pytest.mark.skipif(
    not WORDNET_INSTALLED, reason="/usr/share/wordnet absent: apt-get install wordnet-base"
)
def test_regeneration_equals_committed_file(tmp_path, monkeypatch):
    from wordnet_hierarchy.build import build_hierarchy

    monkeypatch.setenv("IFND_WORDNET_DIR", str(tmp_path / "wordnet"))
    assert render(build_hierarchy()) + "\n" == wh.DATA_FILE.read_text(encoding="utf-8")


def test_missing_wordnet_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path / "absent"))
    with pytest.raises(WordNetUnavailableError, match="apt-get install wordnet-base"):
        prepare_corpus_dir(tmp_path / "corpus")


def test_lexnames_file_format():
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1"
    assert lines[44] == "44\tadj.ppl\t3"


def _image_folder(root: Path, wnids: list[str]):
    from PIL import Image
    from torchvision.datasets import ImageFolder

    for wnid in wnids:
        (root / wnid).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(root / wnid / f"{wnid}_{i}.png")
    return ImageFolder(str(root))


class _WithIndex:
    """Dataset returning (image, target, index), as contrastive pipelines do."""

    def __init__(self, dataset):
        self.dataset, self.classes, self.targets = dataset, dataset.classes, dataset.targets

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return (*self.dataset[index], index)


def test_relabeled_image_folder(tmp_path):
    folder = _image_folder(tmp_path / "train", ["n01440764", "n02123045", "n02123159"])
    dataset = wh.RelabeledDataset(folder, depth=7)
    assert dataset.classes == ["chordate"]
    assert dataset.targets == [0] * 6 and len(dataset) == 6
    dataset = wh.RelabeledDataset(_WithIndex(folder), depth=14)
    assert dataset.classes == ["cypriniform fish", "domestic cat"]
    assert dataset.targets == [0, 0, 1, 1, 1, 1]
    image, label, index = dataset[3]
    assert image.size == (4, 4) and (label, index) == (1, 3)


def test_relabeled_image_folder_rejects_unknown_wnid(tmp_path):
    folder = _image_folder(tmp_path / "train", ["n01440764", "n09999999"])
    expected = r"unknown wnid n09999999 in .*train: expected ImageNet-1K synset folders"
    with pytest.raises(ValueError, match=expected):
        wh.RelabeledDataset(folder, depth=3)


def test_cifar10_levels_and_labels():
    assert wh.cifar10_levels() == [(4, 2), (6, 3), (9, 6), (10, 7), (11, 8), (12, 10)]
    assert wh.relabel_cifar10(4) == ([0, 0, 1, 1, 1, 1, 1, 1, 0, 0], ["artifact", "living thing"])
    assert wh.relabel_cifar10(11)[0] == [0, 1, 2, 3, 4, 3, 5, 4, 6, 7]
    assert wh.relabel_cifar10(18)[0] == list(range(10))


def test_relabeled_cifar10():
    class FakeCifar10:
        classes = wh.CIFAR10_CLASSES
        targets = [9, 3, 0]

        def __getitem__(self, index):
            return "image", self.targets[index]

        def __len__(self):
            return 3

    dataset = wh.RelabeledDataset(FakeCifar10(), depth=4, dataset_name="cifar10")
    assert dataset.targets == [0, 1, 0] and dataset[1] == ("image", 1)
    FakeCifar10.classes = ["plane"]
    with pytest.raises(ValueError, match="unknown cifar10 class 'plane'"):
        wh.RelabeledDataset(FakeCifar10(), depth=4, dataset_name="cifar10")


def test_cifar100_coarse_mapping():
    coarse = wh.cifar100_coarse_labels()
    assert coarse == CIFAR100_COARSE_REFERENCE
    assert Counter(coarse) == {c: 5 for c in range(20)}
    assert list(wh.CIFAR100_FINE_CLASSES) == sorted(wh.CIFAR100_FINE_CLASSES)
    assert len(set(wh.CIFAR100_FINE_CLASSES)) == 100 and len(wh.CIFAR100_COARSE_CLASSES) == 20


@pytest.mark.parametrize("dataset", wh.DATASETS)
def test_stats_needs_no_wordnet(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path / "absent"))
    monkeypatch.setitem(__import__("sys").modules, "nltk", None)  # any nltk import fails
    assert main(["stats", "--dataset", dataset]) == 0
    out = capsys.readouterr().out
    assert "   18  " in out
    if dataset == "imagenet":
        assert "matches at every reported depth" in out
    else:
        assert "depth 4: 2 classes: artifact = airplane, automobile, ship, truck" in out
