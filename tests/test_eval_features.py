"""The shared feature extraction and its on-disk cache: reused when valid, never stale."""
import numpy as np
import pytest
import torch

from eval import data, fixtures
from eval.checkpoints import load_backbone
from eval.features import CheckpointFeatures, cache_file, dataset_features, extract_features

VIEW = data.center_crop_transform(36, 32)


@pytest.fixture()
def setup(tmp_path):
    root = fixtures.make_imagenet_folders(tmp_path / "imagenet", train_per_class=2, val_per_class=2)
    checkpoint = fixtures.save_checkpoint(tmp_path / "ckpt.pt", "convnet4", seed=0)
    return tmp_path, data.image_folder(root, "val", VIEW), checkpoint


def test_features_are_the_frozen_backbone_outputs(setup):
    _, val, checkpoint = setup
    backbone, _ = load_backbone(checkpoint)
    features, labels = extract_features(backbone, val, batch_size=4, progress=False)
    images = torch.stack([val[i][0] for i in range(len(val))])
    with torch.no_grad():
        expected = backbone.eval()(images)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert labels.tolist() == val.targets.tolist() and features.dtype == np.float32


def test_cache_is_reused_without_loading_the_checkpoint(setup):
    tmp, val, checkpoint = setup
    first = CheckpointFeatures(checkpoint, cache_dir=tmp / "cache", device="cpu", progress=False)(val)
    assert not first.reused and first.cache_path.exists()
    again = CheckpointFeatures(checkpoint, cache_dir=tmp / "cache", device="cpu", progress=False)
    second = again(val)
    assert second.reused and again._backbone is None  # answered from disk, weights never loaded
    np.testing.assert_array_equal(first.features, second.features)
    assert again.info.arch == "convnet4" and again._backbone is None  # description stored with the features


def test_cache_key_changes_with_checkpoint_data_and_transform(setup):
    tmp, val, checkpoint = setup
    source = CheckpointFeatures(checkpoint, cache_dir=tmp / "cache", device="cpu", progress=False)
    path = source(val).cache_path
    assert cache_file(tmp / "cache", source.model_identity, val.with_transform(data.center_crop_transform(40, 32))) != path
    other = fixtures.save_checkpoint(tmp / "ckpt.pt", "convnet4", seed=1)  # same path, new weights
    fresh = CheckpointFeatures(other, cache_dir=tmp / "cache", device="cpu", progress=False)(val)
    assert not fresh.reused and fresh.cache_path != path
    fixtures.write_image(val.samples[0][0], label=1, seed=99, size=36)  # an image changes on disk
    changed = data.image_folder(tmp / "imagenet", "val", VIEW)
    assert not CheckpointFeatures(other, cache_dir=tmp / "cache", device="cpu", progress=False)(changed).reused


def test_unreadable_cache_entry_is_recomputed(setup):
    tmp, val, checkpoint = setup
    source = CheckpointFeatures(checkpoint, cache_dir=tmp / "cache", device="cpu", progress=False)
    path = cache_file(tmp / "cache", source.model_identity, val)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated")
    result = source(val)
    assert not result.reused and result.features.shape == (len(val), 256)


def test_in_memory_backbone_without_cache(setup):
    _, val, checkpoint = setup
    backbone, _ = load_backbone(checkpoint)
    result = dataset_features(backbone, val, progress=False)
    assert result.cache_path is None and result.features.shape == (6, 256)
