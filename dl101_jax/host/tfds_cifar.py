"""CIFAR-10 through TFDS without TensorFlow: prepare as array_record, read either format.

TFDS needs TensorFlow only for tfrecords (and its stock CIFAR-10 builder extracts with
`tf.io.gfile`), and TensorFlow is 1.3 GB of a 2.6 GB install. So by default:

- **prepare**: `Cifar10Files`, a subclass of TFDS's `cifar10` builder, reads the official
  `cifar-10-binary.tar.gz` with `tarfile` and numpy and writes `array_record` (TFDS encodes
  the PNGs with Pillow). array_record has no wheels for Intel macOS or Windows; there the
  stock builder prepares tfrecords, with TensorFlow installed. Same name, version,
  features, keys and shuffling as the stock builder, so the prepared dir is a standard
  TFDS dir, in the same example order. It checks
  the tarball's sha256 itself, since a subclass skips TFDS's checksum registry.
- **read**: array_record through `builder.as_data_source`; tfrecord (a user's TFDS cache, a
  dir prepared elsewhere) through `read_tfrecord_framing` plus the features' own
  `deserialize_example_np`, with or without TensorFlow installed: a test shows it gives
  tf.data's pixels, labels and order, and it skips TF's import of several seconds.

A tfrecord file is a sequence of `uint64 length | uint32 masked crc32c(length) | data |
uint32 masked crc32c(data)`; no installed library reads it without TensorFlow, hence the
small reader here. It checks every length against its CRC (8 bytes each, cheap in Python)
and that it stays inside the file, but not the data's CRC (150 MB through a Python CRC
would take minutes): a damaged record then fails to parse or decode as an Example.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import struct
import tarfile

import numpy as np

ARCHIVE = "cifar-10-binary.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
# TFDS's registered checksum for that URL (tensorflow_datasets/url_checksums/cifar10.txt).
SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
PREFIX = "cifar-10-batches-bin/"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
RECORD = 1 + 32 * 32 * 3  # label byte, then the image as 3 planes of 32x32


class ArchiveError(ValueError):
  """A tarball that is not the official CIFAR-10 one; the message says what differs."""


def has_module(name: str) -> bool:
  """Whether `name` is importable, without importing it (importing TensorFlow costs seconds)."""
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


def can_write_array_record() -> bool:
  # array_record ships no wheels for Intel macOS or Windows.
  return has_module("array_record.python.array_record_module")


def sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def check_archive(path: str, expected: str = SHA256) -> None:
  got = sha256(path)
  if got != expected:
    raise ArchiveError(f"{path} has sha256 {got[:16]}..., not the official {ARCHIVE}'s "
                       f"{expected[:16]}...; delete it and download it again")


def records(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
  """A CIFAR-10 binary batch file as (N x 32 x 32 x 3 uint8 images, N labels)."""
  if len(blob) % RECORD:
    raise ArchiveError(f"a batch file of {len(blob)} bytes is not a whole number of "
                       f"{RECORD}-byte records")
  rows = np.frombuffer(blob, np.uint8).reshape(-1, RECORD)
  return rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), rows[:, 0].astype(np.int64)


def read_archive(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{"train", "test"} -> (images, labels) in the official order, and "names" -> label names."""
  try:
    with tarfile.open(path, "r:gz") as tar:
      def member(name: str) -> bytes:
        f = tar.extractfile(PREFIX + name)
        if f is None:
          raise KeyError(name)
        return f.read()
      out = {}
      for split, names in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        parts = [records(member(n)) for n in names]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
      out["names"] = [n for n in member("batches.meta.txt").decode().split("\n") if n.strip()]
  except (tarfile.TarError, KeyError, EOFError, OSError) as e:
    raise ArchiveError(f"{path} is not a readable CIFAR-10 binary tarball ({e})") from None
  return out


@functools.cache
def builder_class():
  """`Cifar10Files`, defined on first use (importing TFDS's builders takes a second)."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification.cifar import Cifar10

  class Cifar10Files(Cifar10, skip_registration=True):
    """TFDS's cifar10 builder, reading the tarball with tarfile/numpy instead of tf.io."""

    name = "cifar10"
    expected_sha256 = SHA256  # a class attribute, so tests can prepare a small tarball
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Optional: place the official {ARCHIVE} here."

    def _split_generators(self, dl_manager):
      try:
        manual = os.path.join(dl_manager.manual_dir, ARCHIVE)
      except AssertionError:  # TFDS's word for "no manual dir, or an empty one"
        manual = ""
      path = manual if os.path.isfile(manual) else os.fspath(dl_manager.download(URL))
      check_archive(path, self.expected_sha256)
      content = read_archive(path)
      self.info.features["label"].names = content["names"]
      return {tfds.Split.TRAIN: self._examples("train_", *content["train"]),
              tfds.Split.TEST: self._examples("test_", *content["test"])}

    def _examples(self, prefix, images, labels):
      from PIL import Image  # TFDS encodes a PIL image with Pillow, an array with TF

      # The stock builder's keys and ids: the index in the official order.
      for i, (image, label) in enumerate(zip(images, labels)):
        yield i, {"id": f"{prefix}{i:05d}", "image": Image.fromarray(image), "label": int(label)}

  return Cifar10Files


def _crc_table() -> list[int]:
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # CRC-32C (Castagnoli), reflected
    table.append(c)
  return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
  c = 0xFFFFFFFF
  for b in data:
    c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
  """The CRC as tfrecord stores it: rotated right by 15 bits plus a constant."""
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecord_framing(path: str):
  """The serialized examples of one tfrecord file, in order (see the module docstring)."""
  with open(path, "rb") as f:
    blob = f.read()
  name, offset, end = os.path.basename(path), 0, len(blob)
  while offset < end:
    if offset + 12 > end:
      raise ValueError(f"{name}: truncated record header at byte {offset}")
    (n,) = struct.unpack_from("<Q", blob, offset)
    (crc,) = struct.unpack_from("<I", blob, offset + 8)
    if crc != masked_crc(blob[offset:offset + 8]):
      raise ValueError(f"{name}: the record length at byte {offset} fails its CRC")
    start = offset + 12
    if start + n + 4 > end:
      raise ValueError(f"{name}: a record at byte {offset} runs past the end of the file")
    yield blob[start:start + n]
    offset = start + n + 4


def read_split(builder, split: str) -> dict[str, np.ndarray]:
  """One split of a prepared cifar10 dir as {"image", "label"} arrays, in file order."""
  from tensorflow_datasets.core import file_adapters

  fmt = builder.info.file_format
  decode = builder.info.features.deserialize_example_np
  if fmt == file_adapters.FileFormat.ARRAY_RECORD:
    source = builder.as_data_source(split=split)
    examples = source.__getitems__(list(range(len(source))))
  elif fmt == file_adapters.FileFormat.TFRECORD:
    paths = [os.path.join(builder.data_dir, f) for f in builder.info.splits[split].filenames]
    examples = [decode(r) for p in paths for r in read_tfrecord_framing(p)]
  else:
    raise ValueError(f"file format {fmt.value}: only array_record and tfrecord are read here")
  return {"image": np.stack([e["image"] for e in examples]),
          "label": np.asarray([e["label"] for e in examples], np.int64)}
