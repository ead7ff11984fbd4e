"""Datasets: OR, digits, the TFDS path (mocked and, when present, the real subset)."""

import os

import numpy as np
import pytest

from dl101_jax.host import data
from dl101_jax.config import Config
from helpers import SHARED_CIFAR, run_module


def test_or_table():
  ds = data.load_or()
  assert ds.x_train.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
  assert ds.y_train[:, 0].tolist() == [0, 1, 1, 1]


def test_digits_fixed_stratified_split():
  a, b = data.load_digits(), data.load_digits()
  assert (a.train_size, a.val_size) == (1437, 360)
  assert a.x_train.shape[1:] == (8, 8, 1) and a.x_train.dtype == np.uint8
  assert np.array_equal(a.x_val, b.x_val)  # deterministic
  counts = np.bincount(a.y_val, minlength=10)
  assert counts.min() >= 35 and counts.max() <= 37  # stratified


@pytest.mark.parametrize("n", [10, 25, 100, 1000])
def test_stratified_subset_is_balanced_and_deterministic(n):
  y = np.random.default_rng(0).integers(0, 10, 5000)
  idx = data.stratified_subset(y, n)
  assert len(idx) == n and np.array_equal(idx, data.stratified_subset(y, n))
  counts = np.bincount(y[idx], minlength=10)
  assert counts.max() - counts.min() <= 1


def test_subset_zero_means_all():
  ds = data.load_digits()
  assert data.subset(ds, 0, 0).train_size == ds.train_size


@pytest.mark.parametrize("mode", ["scalar", "per_channel"])
def test_normalized_training_set_has_zero_mean_unit_std(mode):
  x = np.random.default_rng(0).integers(0, 256, (500, 6, 6, 3)).astype(np.uint8)
  x[..., 1] //= 3  # channels with different statistics
  norm = data.Normalizer.fit(x, mode)
  z = (x.astype(np.float32) - norm.mean) / norm.std
  axes = (0, 1, 2) if mode == "per_channel" else None
  np.testing.assert_allclose(z.mean(axis=axes), 0, atol=1e-4)
  np.testing.assert_allclose(z.std(axis=axes), 1, atol=1e-4)
  assert norm.mean.shape == ((3,) if mode == "per_channel" else ())


def test_missing_data_one_clear_message(tmp_path):
  r = run_module("experiments.dropout", "--data-dir", str(tmp_path), "--epochs", "1",
                 "--workdir", str(tmp_path / "wd"))
  assert r.returncode == 1, r.stderr
  assert "Traceback" not in r.stderr
  err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(err) == 1
  msg = err[0]
  assert str(tmp_path) in msg and "cifar-10-binary.tar.gz" in msg
  assert "--data-dir" in msg and "--dataset digits" in msg


def test_corrupt_tfds_dir_names_dataset_and_dir(tmp_path):
  d = tmp_path / "cifar10" / "3.0.2"
  d.mkdir(parents=True)
  (d / "dataset_info.json").write_text("{ not json")
  with pytest.raises(data.DataError, match="cifar10") as e:
    data.load_cifar10(str(tmp_path))
  assert str(tmp_path) in str(e.value)


@pytest.mark.skipif(not os.path.isdir(SHARED_CIFAR), reason="../shared CIFAR-10 subset absent")
def test_real_cifar10_subset():
  cfg = Config(dataset="cifar10", data_dir=SHARED_CIFAR, train_size=1000, test_size=200)
  ds = data.load(cfg)
  assert ds.x_train.shape == (1000, 32, 32, 3) and ds.x_val.shape == (200, 32, 32, 3)
  assert np.bincount(ds.y_train).tolist() == [100] * 10
  assert 100 < ds.x_train.mean() < 140  # real photos, not noise


@pytest.mark.skipif(not os.path.isdir(SHARED_CIFAR), reason="no prepared CIFAR-10 subset here")
def test_a_cifar10_run_says_what_it_does_before_tensorflow_can(tmp_path):
  r = run_module("experiments.dropout", "--data-dir", SHARED_CIFAR, "--train-size", "500",
                 "--test-size", "100", "--epochs", "1", "--variants", "no_dropout",
                 "--checkpoint-every", "0", "--workdir", str(tmp_path))
  assert r.returncode == 0, r.stderr
  first = r.stdout.splitlines()[:2]
  assert first[0] == "dropout: loading cifar10..."
  assert first[1].startswith("dropout: 500 train / 100 test examples on") and " s; " in first[1]
  assert "compiled in" in r.stdout
  # TensorFlow only reads the files: none of its or absl's log lines reach the user.
  assert not [l for l in r.stderr.splitlines() if l.strip()], r.stderr


def test_hold_out_is_stratified_disjoint_and_keeps_the_test_split():
  ds = data.load_digits()
  held = data.hold_out(ds, 200)
  assert held.train_size == ds.train_size - 200 and held.val_size == 200
  assert held.test_split[0] is ds.x_val and held.test_split[1] is ds.y_val
  counts = np.bincount(held.y_val, minlength=10)
  assert counts.max() - counts.min() <= 1  # class-balanced
  # Disjoint and complete: every training image is in exactly one of the two.
  both = np.concatenate([held.x_train, held.x_val]).reshape(ds.train_size, -1)
  assert len(np.unique(both, axis=0)) == len(np.unique(ds.x_train.reshape(ds.train_size, -1),
                                                       axis=0))
  assert np.array_equal(data.hold_out(ds, 200).y_val, held.y_val)  # deterministic


def test_digits_split_is_cached_exactly_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  fresh = data._split_digits()
  first = data.load_digits()  # builds the cache
  cached = tmp_path / "dl101_jax" / "digits-split-v2.npz"
  assert cached.exists()
  second = data.load_digits()  # reads it
  for ds in (first, second):
    for a, b in zip((ds.x_train, ds.y_train, ds.x_val, ds.y_val), fresh):
      assert a.dtype == b.dtype and np.array_equal(a, b)
  cached.write_bytes(b"not an npz")
  third = data.load_digits()
  assert np.array_equal(third.x_val, fresh[2]) and np.array_equal(third.y_train, fresh[1])
