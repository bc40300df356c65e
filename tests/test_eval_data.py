"""Readers of the on-disk layouts (ImageNet folders, VOCdevkit, Places205 lists, SimCLR subsets)."""
import numpy as np
import pytest
import torch

from eval import data, fixtures
from eval.data import DatasetNotFoundError


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    return {
        "imagenet": fixtures.make_imagenet_folders(base / "imagenet", train_per_class=3, val_per_class=1),
        "subset": fixtures.make_subset_file(base / "1percent.txt", per_class=2),
        "voc": fixtures.make_vocdevkit(base / "voc"),
        "places": fixtures.make_places205(base / "places"),
    }


def test_image_folder_classes_and_labels(roots):
    train = data.image_folder(roots["imagenet"], "train", data.center_crop_transform(36, 32))
    assert train.classes == list(fixtures.IMAGENET_WNIDS)
    assert len(train) == 9 and train.targets.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    image, label = train[4]
    assert image.shape == (3, 32, 32) and label == 1


def test_missing_imagenet_root_and_split_are_named(roots, tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nowhere does not exist; expected <root>/\{train,val\}/<class>"):
        data.image_folder(tmp_path / "nowhere", "train")
    with pytest.raises(DatasetNotFoundError, match=r"test does not exist \(folders present: train, val\)"):
        data.image_folder(roots["imagenet"], "test")


def test_subset_file_labels_follow_the_train_folders(roots):
    subset = data.imagenet_subset(roots["imagenet"], roots["subset"])
    assert [s[0].split("/")[-1] for s in subset.samples][:2] == ["n01440764_1000.JPEG", "n01440764_1001.JPEG"]
    assert subset.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert subset.classes == data.image_folder(roots["imagenet"], "val").classes


def test_subset_errors_name_the_problem(roots, tmp_path):
    (tmp_path / "missing.txt").write_text("n01440764_9999.JPEG\n")
    with pytest.raises(DatasetNotFoundError, match=r"1 images of .*missing\.txt are missing, e\.g\. .*n01440764_9999"):
        data.imagenet_subset(roots["imagenet"], tmp_path / "missing.txt")
    (tmp_path / "alien.txt").write_text("n99999999_1.JPEG\n")
    with pytest.raises(DatasetNotFoundError, match="whose class is not a folder"):
        data.imagenet_subset(roots["imagenet"], tmp_path / "alien.txt")
    with pytest.raises(DatasetNotFoundError, match=r"absent\.txt does not exist; expected one ImageNet training file"):
        data.imagenet_subset(roots["imagenet"], tmp_path / "absent.txt")


@pytest.mark.parametrize("level", ["parent", "devkit", "voc2007"])
def test_voc_labels_match_the_class_files(roots, level):
    devkit = roots["voc"]
    root = {"parent": devkit.parent, "devkit": devkit, "voc2007": devkit / "VOC2007"}[level]
    test = data.voc2007(root, "test")
    assert test.classes == list(data.VOC_CLASSES) and len(test) == 15
    np.testing.assert_array_equal(test.targets, fixtures.voc_labels(15, offset=7))
    assert set(np.unique(test.targets)) == {-1, 0, 1}
    assert test.samples[0][0].endswith("VOC2007/JPEGImages/000021.jpg")


def test_voc_errors_name_path_and_layout(roots, tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"VOC2007 root not found: .*nowhere does not exist; expected VOCdevkit"):
        data.voc2007(tmp_path / "nowhere", "trainval")
    main = tmp_path / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "test.txt").write_text("000001\n")
    with pytest.raises(DatasetNotFoundError, match=r"aeroplane_test\.txt does not exist"):
        data.voc2007(tmp_path, "test")


def test_places205_lists(roots, tmp_path):
    val = data.places205(roots["places"], "val")
    assert len(val) == 6 and val.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert val.classes == ["a/abbey", "b/bakery/shop", "c/canyon"]
    assert "deeplearning/images256/a/abbey/gsun_" in val.samples[0][0]
    explicit = data.places205(None, "train", images_dir=roots["places"] / data.PLACES205_IMAGES,
                              list_file=roots["places"] / data.PLACES205_LISTS / "train_places205.csv")
    assert len(explicit) == 12
    with pytest.raises(DatasetNotFoundError, match=r"val_places205\.csv does not exist; expected .*images256"):
        data.places205(roots["places"], "val", list_file=tmp_path / "val_places205.csv")
    with pytest.raises(DatasetNotFoundError, match=r"Places205 root not found: .*nowhere does not exist"):
        data.places205(tmp_path / "nowhere", "train")


def test_identity_follows_files_labels_and_transform(roots, tmp_path):
    root = fixtures.make_imagenet_folders(tmp_path / "copy", train_per_class=1, val_per_class=1)
    first = data.image_folder(root, "val", data.center_crop_transform(36, 32))
    assert first.identity() == data.image_folder(root, "val", data.center_crop_transform(36, 32)).identity()
    assert first.identity() != first.with_transform(data.center_crop_transform(40, 32)).identity()
    fixtures.write_image(first.samples[0][0], label=2, seed=123, size=40)  # the same file, new content
    assert data.image_folder(root, "val", data.center_crop_transform(36, 32)).identity() != first.identity()


def test_array_dataset_is_standardised_and_identified_by_content():
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    arrays = data.ArrayDataset(images, torch.tensor([0, 1, 0, 1]), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "toy")
    x, y = arrays[1]
    torch.testing.assert_close(x, (images[1].permute(2, 0, 1).float() / 255 - 0.5) / 0.25)
    assert y == 1
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    assert data.ArrayDataset(changed, torch.tensor([0, 1, 0, 1]), (0.5,) * 3, (0.25,) * 3, "toy").identity() \
        != arrays.identity()
