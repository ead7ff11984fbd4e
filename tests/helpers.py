"""Shared test helpers: run an experiment as a user would, read TensorBoard files back."""

import glob
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_CIFAR = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10-subset")


def env(**extra) -> dict:
  e = dict(os.environ, PYTHONPATH=ROOT, DL101_OFFLINE="1", PYTHONUNBUFFERED="1")
  e.pop("XLA_FLAGS", None)
  e.update(extra)
  return e


def run_module(module: str, *args: str, timeout: float = 240, **env_extra):
  """`python -m module args` from the repository root; returns CompletedProcess."""
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env(**env_extra),
                        capture_output=True, text=True, timeout=timeout)


def popen_module(module: str, *args: str, **env_extra) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env(**env_extra),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """Every scalar in the event files under logdir: tag -> [(step, value)], in file order.

  Parses the TFRecord framing (length, crc, payload, crc) and tensorboardX's
  Event proto directly, so the test needs no TensorFlow. Applies TensorBoard's
  purge rule for runs restarted with purge_step.
  """
  from tensorboardX.proto import event_pb2

  out: dict[str, list[tuple[int, float]]] = {}
  files = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
  assert files, f"no event files in {logdir}"
  for path in files:
    with open(path, "rb") as f:
      data = f.read()
    i = 0
    while i < len(data):
      (n,) = struct.unpack("<Q", data[i:i + 8])
      payload = data[i + 12:i + 12 + n]
      i += 12 + n + 4
      ev = event_pb2.Event()
      ev.ParseFromString(payload)
      if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START:
        # TensorBoard's purge rule: a restart at step s orphans points at steps >= s.
        out = {t: [(st, x) for st, x in pts if st < ev.step] for t, pts in out.items()}
      for v in ev.summary.value:
        if v.HasField("simple_value"):
          out.setdefault(v.tag, []).append((ev.step, v.simple_value))
  return out


def hparam_tags(logdir: str) -> set[str]:
  """Plugin names found in the event files (hparams writes 'hparams' summaries)."""
  from tensorboardX.proto import event_pb2

  names = set()
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    data = open(path, "rb").read()
    i = 0
    while i < len(data):
      (n,) = struct.unpack("<Q", data[i:i + 8])
      ev = event_pb2.Event()
      ev.ParseFromString(data[i + 12:i + 12 + n])
      i += 12 + n + 4
      for v in ev.summary.value:
        if v.metadata.plugin_data.plugin_name:
          names.add(v.metadata.plugin_data.plugin_name)
  return names


def hparams_sessions(logdir: str) -> list[dict]:
  """The hparams of each session start in the run's event files, in file order."""
  from tensorboardX.proto import event_pb2, plugin_hparams_pb2

  out = []
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    data = open(path, "rb").read()
    i = 0
    while i < len(data):
      (n,) = struct.unpack("<Q", data[i:i + 8])
      ev = event_pb2.Event()
      ev.ParseFromString(data[i + 12:i + 12 + n])
      i += 12 + n + 4
      for v in ev.summary.value:
        if v.metadata.plugin_data.plugin_name == "hparams":
          pd = plugin_hparams_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
          if pd.HasField("session_start_info"):
            hp = pd.session_start_info.hparams
            out.append({k: getattr(hp[k], hp[k].WhichOneof("kind")) for k in hp})
  return out
