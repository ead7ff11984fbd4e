"""CIFAR-10 without TensorFlow: a tarball prepared as array_record, tfrecord read by the
project's own reader, and both agreeing with each other and with tf.data where TF exists."""

import json
import os
import shutil

import numpy as np
import pytest

from dl101_jax.host import data, tfds_cifar
from helpers import SHARED_CIFAR, make_cifar_tarball, run_module, write_tfrecord

pytest.importorskip("array_record.python.array_record_module")


def test_crc32c_known_value():
  assert tfds_cifar.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
  assert tfds_cifar.crc32c(b"") == 0


@pytest.fixture()
def prepared(tmp_path, monkeypatch):
  """A data dir prepared from a small official-layout tarball (its own sha256 allowed)."""
  manual = tmp_path / "tfds" / "downloads" / "manual"
  manual.mkdir(parents=True)
  archive = str(manual / tfds_cifar.ARCHIVE)
  content = make_cifar_tarball(archive)
  monkeypatch.setattr(tfds_cifar.builder_class(), "expected_sha256", tfds_cifar.sha256(archive))
  monkeypatch.setattr(data, "_offline_reason", lambda: "tests never download")
  ds = data.load_cifar10(str(tmp_path / "tfds"))
  return tmp_path / "tfds", content, ds


def _pairs(x, y):
  return sorted((img.tobytes(), int(label)) for img, label in zip(x, y))


def test_tarball_prepares_as_array_record_with_every_image_and_its_label(prepared):
  root, content, ds = prepared
  info = json.loads((root / "cifar10" / "3.0.2" / "dataset_info.json").read_text())
  assert info["fileFormat"] == "array_record" and info["name"] == "cifar10"
  assert [f.suffix for f in (root / "cifar10" / "3.0.2").glob("*.tfrecord*")] == []
  for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_val, ds.y_val)):
    images, labels = content[split]
    assert x.shape == images.shape and x.dtype == np.uint8
    # Every (pixels, label) pair of the tarball, exactly once: PNG is lossless.
    assert _pairs(x, y) == _pairs(images, labels)
  again = data.load_cifar10(str(root))  # the second load reads what the first prepared
  assert np.array_equal(again.x_train, ds.x_train) and np.array_equal(again.y_val, ds.y_val)


def _as_tfrecord(src, dst):
  """The same prepared dir in tfrecord format: the same serialized Examples, re-framed."""
  from array_record.python.array_record_module import ArrayRecordReader

  version = dst / "cifar10" / "3.0.2"
  version.mkdir(parents=True)
  for f in (src / "cifar10" / "3.0.2").iterdir():
    if ".array_record-" in f.name:
      write_tfrecord(str(version / f.name.replace(".array_record-", ".tfrecord-")),
                     ArrayRecordReader(str(f)).read_all())
    else:
      shutil.copy(f, version / f.name)
  info = json.loads((version / "dataset_info.json").read_text())
  (version / "dataset_info.json").write_text(json.dumps({**info, "fileFormat": "tfrecord"}))


def _tf_data(root):
  """The reference: TFDS through TensorFlow's tf.data, when TF is installed."""
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("tensorflow")
  b = tfds.builder("cifar10", data_dir=str(root))
  out = {}
  for split in ("train", "test"):
    parts = list(tfds.as_numpy(b.as_dataset(split=split, batch_size=10_000, shuffle_files=False)))
    out[split] = tuple(np.concatenate([p[k] for p in parts]) for k in ("image", "label"))
  return out


def test_tfrecord_and_array_record_readers_give_the_same_pixels_labels_and_order(prepared,
                                                                                  tmp_path):
  root, _, ds = prepared
  _as_tfrecord(root, tmp_path / "tfr")
  tfr = data.load_cifar10(str(tmp_path / "tfr"))
  for a, b in ((ds.x_train, tfr.x_train), (ds.y_train, tfr.y_train),
               (ds.x_val, tfr.x_val), (ds.y_val, tfr.y_val)):
    assert a.dtype == b.dtype and np.array_equal(a, b)  # same order, not only the same set


def test_tf_data_reads_the_tfrecords_written_here_the_same(prepared, tmp_path):
  root, _, ds = prepared
  _as_tfrecord(root, tmp_path / "tfr")
  ref = _tf_data(tmp_path / "tfr")  # TF checks both CRCs of every record
  assert np.array_equal(ref["train"][0], ds.x_train) and np.array_equal(ref["test"][1], ds.y_val)


@pytest.mark.skipif(not os.path.isdir(SHARED_CIFAR), reason="../shared CIFAR-10 subset absent")
def test_the_tfrecord_reader_matches_tf_data_on_a_dir_tensorflow_prepared():
  ds = data.load_cifar10(SHARED_CIFAR)
  ref = _tf_data(SHARED_CIFAR)
  assert np.array_equal(ref["train"][0], ds.x_train) and np.array_equal(ref["train"][1], ds.y_train)
  assert np.array_equal(ref["test"][0], ds.x_val) and np.array_equal(ref["test"][1], ds.y_val)


def test_a_corrupted_tarball_is_one_line_and_exit_2(tmp_path):
  manual = tmp_path / "downloads" / "manual"
  manual.mkdir(parents=True)
  make_cifar_tarball(str(manual / tfds_cifar.ARCHIVE))  # not the official bytes
  r = run_module("experiments.dropout", "--data-dir", str(tmp_path), "--epochs", "1",
                 "--workdir", str(tmp_path / "wd"))
  assert r.returncode == 2, r.stderr
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: --data-dir: "), r.stderr
  assert "sha256" in lines[0] and tfds_cifar.SHA256[:16] in lines[0]
  assert not (tmp_path / "cifar10" / "3.0.2").exists()  # nothing half-prepared is kept


def test_a_truncated_tfrecord_is_one_clear_error(prepared, tmp_path):
  root, _, _ = prepared
  _as_tfrecord(root, tmp_path / "tfr")
  f = next((tmp_path / "tfr" / "cifar10" / "3.0.2").glob("*train.tfrecord*"))
  f.write_bytes(f.read_bytes()[:-100])
  with pytest.raises(data.DataError, match="unreadable or corrupt.*runs past the end"):
    data.load_cifar10(str(tmp_path / "tfr"))


def test_without_array_record_or_tensorflow_preparing_names_the_way_out(tmp_path, monkeypatch):
  """Intel macOS and Windows have no array_record wheels: without TF as well, preparing a
  tarball is one clear error that names requirements-tf.txt (a prepared dir still reads)."""
  manual = tmp_path / "downloads" / "manual"
  manual.mkdir(parents=True)
  make_cifar_tarball(str(manual / tfds_cifar.ARCHIVE))
  monkeypatch.setattr(tfds_cifar, "can_write_array_record", lambda: False)
  real = tfds_cifar.has_module
  monkeypatch.setattr(tfds_cifar, "has_module", lambda name: name != "tensorflow" and real(name))
  with pytest.raises(data.DataError, match="requirements-tf.txt"):
    data.load_cifar10(str(tmp_path))
