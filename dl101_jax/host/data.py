"""Datasets as host numpy arrays: the OR table, scikit-learn digits, CIFAR-10 via TFDS.

Each loader returns a `Dataset` once; `train.py` puts it on the device and never
copies it again. Images stay uint8 (CIFAR-10 is 150 MB that way) and are
normalized on the device with `Normalizer` statistics from the training split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys

import numpy as np

from dl101_jax.host import files, tfds_cifar
from dl101_jax.config import Config, ConfigError


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
DIGIT_CLASSES = tuple(str(d) for d in range(10))


class DataError(RuntimeError):
  """Data that cannot be loaded; the message says where we looked and what to do."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  x_train: np.ndarray  # N x ... (uint8 images N x H x W x C, or float32 features)
  y_train: np.ndarray  # N int32 labels, or N x 1 float32 targets
  # The split validated on after every epoch: the test split, as in the tutorial, or with
  # --val-size a split held out of the training set.
  x_val: np.ndarray | None
  y_val: np.ndarray | None
  num_classes: int  # 1 for a single sigmoid output
  # With --val-size: the untouched test split, scored once at the end by whoever selects
  # on validation.
  test_split: tuple[np.ndarray, np.ndarray] | None = None
  class_names: tuple[str, ...] = ()  # label i's name, for tables and pictures

  @property
  def train_size(self) -> int:
    return len(self.x_train)

  @property
  def val_size(self) -> int:
    """Examples in the split validated on (x_val)."""
    return 0 if self.x_val is None else len(self.x_val)

  @property
  def is_image(self) -> bool:
    return self.x_train.ndim == 4


def load_or() -> Dataset:
  """The tutorial's logical OR: 4 rows, one sigmoid target each."""
  x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], np.float32)
  y = np.array([[0.0], [1.0], [1.0], [1.0]], np.float32)
  return Dataset("or", x, y, None, None, num_classes=1)


def load_digits() -> Dataset:
  """scikit-learn's 1,797 real 8x8 digits; a fixed stratified 80/20 split (1,437/360).

  The split is kept in the project's cache after the first load: importing scikit-learn
  costs more (1.2 s on 2 cores) than the rest of a digits run's setup."""
  cached = os.path.join(files.cache_root(), "digits-split-v2.npz")
  try:
    with np.load(cached) as d:
      parts = [d[k] for k in ("x_train", "y_train", "x_test", "y_test")]
  except (OSError, KeyError, ValueError):
    parts = _split_digits()
    try:
      with files.atomic_path(cached) as tmp:
        np.savez(tmp, **dict(zip(("x_train", "y_train", "x_test", "y_test"), parts)))
    except OSError:
      pass  # a read-only cache only costs the import next time
  return Dataset("digits", *parts, num_classes=10, class_names=DIGIT_CLASSES)


def _split_digits() -> list[np.ndarray]:
  """[x_train, y_train, x_test, y_test]."""
  from sklearn.datasets import load_digits as sk_load
  from sklearn.model_selection import train_test_split

  d = sk_load()
  # Pixel values are 0..16; scale to uint8 so every image dataset shares one path.
  x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = d.target.astype(np.int32)
  x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, stratify=y, random_state=0)
  return [x_tr, y_tr, x_te, y_te]


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def _tfds_error(data_dir: str, cause: BaseException) -> DataError:
  manual = os.path.join(data_dir, "downloads", "manual")
  return DataError(
      f"cifar10: no prepared TFDS data in {data_dir}/cifar10 and it could not be "
      f"downloaded ({_first_line(cause)}). "
      f"Place the official cifar-10-binary.tar.gz in {manual}/, or point --data-dir at a "
      f"prepared TFDS data dir, or run offline with --dataset digits.")


CIFAR10_HOST = "www.cs.toronto.edu"


def _offline_reason() -> str | None:
  """Why a download cannot work right now, or None: DL101_OFFLINE=1, or no route to the host."""
  import socket

  if os.environ.get("DL101_OFFLINE") == "1":
    return "DL101_OFFLINE=1 is set"
  try:
    socket.create_connection((CIFAR10_HOST, 443), timeout=5).close()
  except OSError as e:
    return f"cannot reach {CIFAR10_HOST}: {e}"
  return None


def load_cifar10(data_dir: str | None = None) -> Dataset:
  """CIFAR-10 through TFDS, downloaded and prepared on first use, cached in `data_dir`.

  Without TensorFlow (the default install) it is prepared as array_record and tfrecord
  dirs are read by the project's own reader; see `tfds_cifar`.
  """
  # If TF is installed and reads a tfrecord dir, silence its C++ logs and its oneDNN notice
  # (about TF's own numerics, which never touch training); they print before our first line.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  import tensorflow_datasets as tfds
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.ERROR)

  data_dir = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
  try:
    builder = tfds.builder("cifar10", data_dir=data_dir)
  except Exception as e:  # unreadable dataset_info.json and the like
    raise DataError(f"cifar10: cannot read the TFDS dir {data_dir}: {e}") from None
  if not builder.is_prepared():
    builder = _prepare(tfds, data_dir)
  try:
    splits = {s: tfds_cifar.read_split(builder, s) for s in ("train", "test")}
  except Exception as e:
    raise DataError(f"cifar10: the TFDS files in {data_dir}/cifar10 are unreadable or "
                    f"corrupt ({_first_line(e)}); delete that folder to re-prepare it, "
                    f"or point --data-dir elsewhere.") from None
  tr, te = splits["train"], splits["test"]
  return Dataset("cifar10", tr["image"], tr["label"].astype(np.int32),
                 te["image"], te["label"].astype(np.int32), num_classes=10,
                 class_names=CIFAR10_CLASSES)


def _prepare(tfds, data_dir: str):
  """Download (or take from downloads/manual) the tarball and prepare it in data_dir."""
  manual = os.path.join(data_dir, "downloads", "manual")
  if not os.path.exists(os.path.join(manual, tfds_cifar.ARCHIVE)):
    # Without this, TFDS retries an unreachable host for minutes before failing.
    why = _offline_reason()
    if why:
      raise _tfds_error(data_dir, ConnectionError(why))
  if tfds_cifar.can_write_array_record():
    builder = tfds_cifar.builder_class()(data_dir=data_dir, file_format="array_record")
  elif tfds_cifar.has_module("tensorflow"):
    print("cifar10: array_record is not installed (it has no wheels for Intel macOS or "
          "Windows); preparing tfrecords through TensorFlow instead", file=sys.stderr)
    builder = tfds.builder("cifar10", data_dir=data_dir)  # the stock builder, tfrecord
  else:
    raise DataError("cifar10: preparing it needs array_record (no wheels for this platform) "
                    "or TensorFlow: pip install -r requirements-tf.txt, or point --data-dir "
                    "at a prepared TFDS dir")
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
  except tfds_cifar.ArchiveError as e:
    raise ConfigError("data_dir", str(e)) from None
  except Exception as e:
    raise _tfds_error(data_dir, e) from None
  return tfds.builder("cifar10", data_dir=data_dir)


def stratified_subset(y: np.ndarray, n: int) -> np.ndarray:
  """Indices of a deterministic, class-balanced subset of size n (in original order).

  Classes are interleaved round-robin in original order, so any prefix is
  as balanced as the classes allow.
  """
  if n <= 0 or n >= len(y):
    return np.arange(len(y))
  rank = np.empty(len(y), np.int64)
  for c in np.unique(y):
    idx = np.flatnonzero(y == c)
    rank[idx] = np.arange(len(idx))
  order = np.lexsort((y, rank))  # by rank within class, then class
  return np.sort(order[:n])


def subset(ds: Dataset, train_size: int, test_size: int) -> Dataset:
  tr = stratified_subset(ds.y_train, train_size)
  x_te, y_te = ds.x_val, ds.y_val
  if x_te is not None:
    te = stratified_subset(ds.y_val, test_size)
    x_te, y_te = x_te[te], y_te[te]
  return dataclasses.replace(ds, x_train=ds.x_train[tr], y_train=ds.y_train[tr],
                             x_val=x_te, y_val=y_te)


def hold_out(ds: Dataset, n: int) -> Dataset:
  """A class-stratified validation split of n training examples, in place of the test split.

  Deterministic (the same n always holds out the same examples); the test split
  moves to `test_split`, untouched.
  """
  val = stratified_subset(ds.y_train, n)
  rest = np.setdiff1d(np.arange(ds.train_size), val)
  return dataclasses.replace(ds, x_train=ds.x_train[rest], y_train=ds.y_train[rest],
                             x_val=ds.x_train[val], y_val=ds.y_train[val],
                             test_split=(ds.x_val, ds.y_val))


def train_size_on_disk(config: Config) -> int:
  """The training-set size `load` will see, without loading: a prepared TFDS dir's
  dataset_info.json gives CIFAR-10's (a subset may be prepared); else the known size."""
  from dl101_jax.config import TRAIN_SIZES

  n = TRAIN_SIZES[config.dataset]
  if config.dataset == "cifar10":
    import glob
    import json

    root = config.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    for path in sorted(glob.glob(os.path.join(os.path.expanduser(root), "cifar10",
                                              "*", "dataset_info.json"))):
      try:
        splits = json.load(open(path))["splits"]
        n = sum(int(x) for sp in splits if sp["name"] == "train" for x in sp["shardLengths"])
      except (OSError, ValueError, KeyError, TypeError):
        continue  # load() reports an unreadable dir in its own words
  return min(config.train_size, n) if config.train_size else n


def load(config: Config) -> Dataset:
  """The dataset a config names, subset and split as it asks."""
  if config.dataset == "or":
    return load_or()
  ds = load_digits() if config.dataset == "digits" else load_cifar10(config.data_dir)
  ds = subset(ds, config.train_size, config.test_size)
  return hold_out(ds, config.val_size) if config.val_size else ds


def fingerprint(ds: Dataset) -> str:
  """What a resume checks the data against (16 hex digits of a sha256): the name, the split
  sizes, every label and 64 images spread over each split. A different --data-dir, a
  re-prepared dataset or another sample changes it; it costs microseconds, not a pass."""
  h = hashlib.sha256(f"{ds.name}:{ds.num_classes}".encode())
  splits = [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), ds.test_split or (None, None)]
  for x, y in splits:
    if x is None:
      continue
    h.update(f"{len(x)}:{x.shape}:{x.dtype}".encode())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(np.ascontiguousarray(x[np.linspace(0, len(x) - 1, min(64, len(x))).astype(int)]))
  return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """Featurewise zero-centre and std-norm (TFLearn's ImagePreprocessing)."""

  mean: np.ndarray  # scalar, or C per channel
  std: np.ndarray

  @classmethod
  def fit(cls, x_train: np.ndarray, mode: str) -> "Normalizer":
    if mode == "none" or x_train.ndim != 4:
      return cls(np.zeros((), np.float32), np.ones((), np.float32))
    axes = (0, 1, 2) if mode == "per_channel" else None
    # float64 accumulation over up to 150M pixels, without a float64 copy; once per run.
    mean = x_train.mean(axis=axes, dtype=np.float64)
    std = x_train.std(axis=axes, dtype=np.float64)
    return cls(np.asarray(mean, np.float32), np.asarray(np.maximum(std, 1e-6), np.float32))
