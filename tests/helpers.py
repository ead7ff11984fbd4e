"""Shared test helpers: run an experiment as a user would, read TensorBoard files back."""

import glob
import json
import os
import struct
import signal
import subprocess
import sys
import time

from dl101_jax.host import tfds_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_CIFAR = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10-subset")


# The suite's programs are small and run a step or two, so compiling them is most of its time:
# XLA's backend at optimization level 1 compiles a digits CNN about a quarter sooner (15.3 s ->
# 11.1 s for a 2-seed dropout run from a cold cache, here) with the goldens unchanged. (Level 0
# is quicker still but gave NaNs with BatchNorm.) DL101_TEST_OPTIMIZE=1 compiles as users' runs
# do, at the default level: the whole suite (benchmarks/gpu_check.sh on an accelerator), or one
# subprocess (`run_module(..., DL101_TEST_OPTIMIZE="1")`) whose bound was measured there.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=1"


def _optimized(extra: dict) -> bool:
  return bool(extra.get("DL101_TEST_OPTIMIZE") or os.environ.get("DL101_TEST_OPTIMIZE"))


def env(**extra) -> dict:
  """The environment of a subprocess run as a user would: the suite's XLA flags plus the
  test's own (`XLA_FLAGS=...`, such as a device count), nothing inherited."""
  e = dict(os.environ, PYTHONPATH=ROOT, DL101_OFFLINE="1", PYTHONUNBUFFERED="1")
  e.pop("XLA_FLAGS", None)
  own = "" if _optimized(extra) else TEST_XLA_FLAGS
  flags = " ".join(f for f in (own, extra.pop("XLA_FLAGS", "")) if f)
  if flags:
    e["XLA_FLAGS"] = flags
  e.update(extra)
  return e


def run_module(module: str, *args: str, timeout: float = 240, **env_extra):
  """`python -m module args` from the repository root; returns CompletedProcess."""
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env(**env_extra),
                        capture_output=True, text=True, timeout=timeout)


def popen_module(module: str, *args: str, **env_extra) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env(**env_extra),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def events(logdir: str):
  """Every Event in the run's event files, in file order (TFRecord framing parsed directly:
  length, crc, payload, crc), so the tests need no TensorFlow."""
  from tensorboardX.proto import event_pb2

  files = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
  assert files, f"no event files in {logdir}"
  for path in files:
    for record in tfds_cifar.read_tfrecord_framing(path):
      ev = event_pb2.Event()
      ev.ParseFromString(record)
      yield ev


def write_tfrecord(path: str, records) -> None:
  """A valid tfrecord file (both CRCs), as TensorFlow's writer makes it."""
  with open(path, "wb") as f:
    for r in records:
      head = struct.pack("<Q", len(r))
      f.write(head + struct.pack("<I", tfds_cifar.masked_crc(head)) + r
              + struct.pack("<I", tfds_cifar.masked_crc(r)))


def make_cifar_tarball(path: str, per_batch: int = 4, test: int = 6, seed: int = 0):
  """A small cifar-10-binary.tar.gz in the official layout (random pixels and labels);
  returns read_archive's view of it."""
  import io
  import tarfile

  import numpy as np

  rng = np.random.default_rng(seed)
  with tarfile.open(path, "w:gz") as tar:
    def add(name, blob):
      info = tarfile.TarInfo(tfds_cifar.PREFIX + name)
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
    for name in (*tfds_cifar.TRAIN_FILES, *tfds_cifar.TEST_FILES):
      rows = rng.integers(0, 256, (test if "test" in name else per_batch, tfds_cifar.RECORD),
                          dtype=np.uint8)
      rows[:, 0] %= 10
      add(name, rows.tobytes())
    from dl101_jax.host.data import CIFAR10_CLASSES
    add("batches.meta.txt", ("\n".join(CIFAR10_CLASSES) + "\n\n").encode())
  return tfds_cifar.read_archive(path)


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """Every scalar under logdir: tag -> [(step, value)], with TensorBoard's purge rule applied
  for runs restarted with a START session log."""
  out: dict[str, list[tuple[int, float]]] = {}
  for ev in events(logdir):
    if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START:
      # TensorBoard's purge rule: a restart at step s orphans points at steps >= s.
      out = {t: [(st, x) for st, x in pts if st < ev.step] for t, pts in out.items()}
    for v in ev.summary.value:
      if v.HasField("simple_value"):
        out.setdefault(v.tag, []).append((ev.step, v.simple_value))
  return out


def hparam_tags(logdir: str) -> set[str]:
  """Plugin names found in the event files (hparams writes 'hparams' summaries)."""
  return {v.metadata.plugin_data.plugin_name for ev in events(logdir) for v in ev.summary.value
          if v.metadata.plugin_data.plugin_name}


def hparams_data(logdir: str) -> list:
  """Every HParams plugin record in the folder's event files, in file order."""
  from tensorboardX.proto import plugin_hparams_pb2

  return [plugin_hparams_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
          for ev in events(logdir) for v in ev.summary.value
          if v.metadata.plugin_data.plugin_name == "hparams"]


def hparams_sessions(logdir: str) -> list[dict]:
  """The hparams of each session start in the run's event files, in file order."""
  out = []
  for pd in hparams_data(logdir):
    if pd.HasField("session_start_info"):
      hp = pd.session_start_info.hparams
      out.append({k: getattr(hp[k], hp[k].WhichOneof("kind")) for k in hp})
  return out


def hparams_ends(logdir: str) -> list[int]:
  """The status of each session end in the folder (api_pb2.Status: 1 success, 2 failure)."""
  return [pd.session_end_info.status for pd in hparams_data(logdir)
          if pd.HasField("session_end_info")]


def hparams_columns(logdir: str) -> dict[str, list]:
  """The experiment summary's columns: each hyperparameter and its discrete domain."""
  (exp,) = [pd.experiment for pd in hparams_data(logdir) if pd.HasField("experiment")]
  return {i.name: [getattr(x, x.WhichOneof("kind")) for x in i.domain_discrete.values]
          for i in exp.hparam_infos}


# --- Resume tests: kill a run after its first checkpoint; compare results without clocks.

TIMING = {"wall_seconds", "seconds", "compile_seconds", "process_seconds"}


def strip(obj):
  """results.json without wall-clock fields and the workdir (they differ by nature)."""
  if isinstance(obj, dict):
    return {k: strip(v) for k, v in obj.items() if k not in TIMING and k != "workdir"}
  if isinstance(obj, list):
    return [strip(v) for v in obj]
  return obj


def checkpoint_steps(wd):
  root = os.path.join(wd, "checkpoints")
  steps = []
  for g in os.listdir(root) if os.path.isdir(root) else []:
    if "." in g:  # <group>.corrupt is not the group's checkpoints
      continue
    steps += [int(d) for d in os.listdir(os.path.join(root, g)) if d.isdigit()]
  return steps


def kill_after_checkpoint(args, wd, sig=signal.SIGKILL, module="experiments.dropout", epoch=1):
  """Start `module`, send `sig` once a checkpoint at `epoch` or later is on disk."""
  p = popen_module(module, *args, "--workdir", str(wd))
  deadline = time.time() + 120
  while time.time() < deadline and p.poll() is None and max(checkpoint_steps(wd),
                                                            default=0) < epoch:
    time.sleep(0.02)
  assert p.poll() is None, "the run ended before it could be killed"
  p.send_signal(sig)
  out, err = p.communicate(timeout=60)
  return p.returncode, out, err


def killed_and_resumed(module, args, tmp_path, epoch=1):
  """An uninterrupted run (tmp_path/ref), and one killed with -9 once a checkpoint at `epoch`
  or later is on disk and then re-run with the same command (tmp_path/run).

  Returns (ref results.json, resumed results.json, the re-run's CompletedProcess).
  """
  ref = run_module(module, *args, "--workdir", str(tmp_path / "ref"))
  assert ref.returncode == 0, ref.stderr
  code, _, _ = kill_after_checkpoint(args, tmp_path / "run", module=module, epoch=epoch)
  assert code == -signal.SIGKILL
  again = run_module(module, *args, "--workdir", str(tmp_path / "run"))
  assert again.returncode == 0, again.stderr
  return (json.load(open(tmp_path / "ref" / "results.json")),
          json.load(open(tmp_path / "run" / "results.json")), again)


def small_group_data():
  """A tiny uint8 dataset on the device (40 train / 12 validation 6x6 images, 3 classes) and a
  matching ConvNet with dropout: cheap programs for group and progress properties."""
  import jax.numpy as jnp
  import numpy as np

  from dl101_jax.core import train
  from dl101_jax.core.models import ConvNet

  rng = np.random.default_rng(0)
  data = train.DeviceData(jnp.asarray(rng.integers(0, 255, (40, 6, 6, 1)), jnp.uint8),
                          jnp.asarray(rng.integers(0, 3, 40), jnp.int32),
                          jnp.asarray(rng.integers(0, 255, (12, 6, 6, 1)), jnp.uint8),
                          jnp.asarray(rng.integers(0, 3, 12), jnp.int32), jnp.float32(127.0),
                          jnp.float32(70.0))
  return data, ConvNet(layer_sets=((4,),), fc=(8,), num_classes=3, dropout=True, im2col=True)
