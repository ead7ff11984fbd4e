"""What a run tells the world: TFLearn-style console lines, TensorBoard, results.json, summary.md.

Pictures are in plots.py (matplotlib is imported only when one is drawn).
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

import numpy as np

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
# The tutorial's TensorBoard tags.
TAGS = {"train_loss": "Loss", "train_accuracy": "Accuracy", "val_loss": "Loss/Validation",
        "val_accuracy": "Accuracy/Validation"}


def step_line(step: int, loss: float, seconds: float) -> str:
  """TFLearn's step line; `time` is the epoch's seconds (sub-millisecond epochs in µs)."""
  t = f"{seconds:.3f}s" if seconds >= 0.001 else f"{seconds * 1e6:.0f}µs"
  return f"Training Step: {step}  | total loss: {loss:.5f} | time: {t}"


def epoch_line(label: str, epoch: int, epochs: int, m: dict, n: int, *, acc: bool = True) -> str:
  """`| Adam | epoch: 012 | loss: 0.81234 - acc: 0.7123 | val_loss: ... -- iter: 50000/50000`."""
  width = max(3, len(str(epochs)))
  s = f"| {label} | epoch: {epoch:0{width}d} | loss: {m['train_loss']:.5f}"
  if acc:
    s += f" - acc: {m['train_accuracy']:.4f}"
  if "val_loss" in m:
    s += f" | val_loss: {m['val_loss']:.5f}"
    if acc:
      s += f" - val_acc: {m['val_accuracy']:.4f}"
  return s + f" -- iter: {n}/{n}"


def _hparam_value(v: Any):
  if isinstance(v, bool) or isinstance(v, (int, float, str)):
    return v
  return str(v)


# Keras-style overlay: <run>/train and <run>/validation hold the same tags, so
# TensorBoard draws training and validation on one chart (the overfitting gap).
OVERLAY = {"train_loss": ("train", "epoch_loss"), "train_accuracy": ("train", "epoch_accuracy"),
           "val_loss": ("validation", "epoch_loss"),
           "val_accuracy": ("validation", "epoch_accuracy")}


def import_tensorboardx() -> None:
  """Import tensorboardX without torch. Its package import runs tensorboardX/writer.py, which
  imports torch whenever torch is installed, only so that torch tensors count as arrays;
  this project logs numpy, and that import costs seconds (3.5 s measured) of every run's
  start. So torch is hidden (a None in sys.modules makes `import torch` raise ImportError)
  for that one import, and unhidden right after: a later `import torch`, in a notebook say,
  still works. Where torch is imported already, nothing is hidden."""
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    import tensorboardX  # noqa: F401
    return
  sys.modules["torch"] = None
  try:
    import tensorboardX  # noqa: F401
  finally:
    del sys.modules["torch"]


# The HParams dashboard reads one file per folder, replaced whole each time: TensorBoard keeps
# the first metadata of each tag it sees, so a resumed run's new session start (or a second
# experiment summary) in another file would lose to the stale one. tensorboardX's hparams()
# sets no domains and writes "success" whenever it is called, so its protos are assembled here.
HPARAMS_EVENTS = "events.out.tfevents.0.hparams"


def _hparams_summary(tag: str, **content):
  from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
  from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

  data = HParamsPluginData(version=0, **content).SerializeToString()
  meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams",
                                                                 content=data))
  return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def _set_value(value, v: Any) -> None:
  """A protobuf Value from a config value: a bool, a number or (anything else) a string."""
  v = _hparam_value(v)
  if isinstance(v, bool):
    value.bool_value = v
  elif isinstance(v, (int, float)):
    value.number_value = float(v)
  else:
    value.string_value = v


def experiment_summary(columns: dict[str, list]):
  """The dashboard's columns: each hyperparameter with the values its runs take (a discrete
  domain), then the validation accuracy and loss as metrics."""
  from tensorboardX.proto.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName

  infos = []
  for name, values in columns.items():
    v = _hparam_value(values[0])
    kind = ("DATA_TYPE_BOOL" if isinstance(v, bool) else
            "DATA_TYPE_FLOAT64" if isinstance(v, (int, float)) else "DATA_TYPE_STRING")
    info = HParamInfo(name=name, type=DataType.Value(kind))
    for x in values:
      _set_value(info.domain_discrete.values.add(), x)
    if len(values) > 1:
      # TensorBoard shows the columns marked as differing first (its 5 first, by default),
      # as it marks them when it reads runs without a summary. tensorboardX's copy of
      # api.proto predates the field (`bool differs = 7`), so its bytes are added here:
      # tag 7, varint, true; protobuf keeps them as an unknown field.
      info = HParamInfo.FromString(info.SerializeToString() + b"\x38\x01")
    infos.append(info)
  metrics = [MetricInfo(name=MetricName(tag=TAGS[k])) for k in ("val_accuracy", "val_loss")]
  return _hparams_summary("_hparams_/experiment",
                          experiment=Experiment(hparam_infos=infos, metric_infos=metrics))


def write_hparams(logdir: str, summaries: list) -> None:
  """<logdir>/HPARAMS_EVENTS holds exactly `summaries`."""
  os.makedirs(logdir, exist_ok=True)
  replace_events(os.path.join(logdir, HPARAMS_EVENTS), summaries)


def replace_events(path: str, summaries: list, steps: list[int] | None = None) -> None:
  """An event file that holds exactly `summaries` (at `steps`, else step 0): written aside,
  then renamed over `path` (a full disk leaves the old file and no partial one)."""
  from tensorboardX.proto import event_pb2
  from tensorboardX.record_writer import RecordWriter

  # aside from TensorBoard too: it reads any file whose name holds "tfevents"
  aside = os.path.join(os.path.dirname(path), ".partial-" + path.rsplit(".", 1)[-1])
  try:
    w = RecordWriter(aside)
    w.write(event_pb2.Event(wall_time=time.time(),
                            file_version="brain.Event:2").SerializeToString())
    for summary, step in zip(summaries, steps or [0] * len(summaries)):
      w.write(event_pb2.Event(wall_time=time.time(), step=step,
                              summary=summary).SerializeToString())
    w.flush()
    w.close()
    os.replace(aside, path)
  except BaseException:
    if os.path.exists(aside):
      os.remove(aside)
    raise


class TensorBoardRun:
  """Per-epoch scalars of one run (variant, seed) under <workdir>/<run name>/.

  The run folder holds the tutorial's tags (Loss, Accuracy, Loss/Validation,
  Accuracy/Validation) and the hparams; its train/ and validation/ subfolders
  hold epoch_loss and epoch_accuracy, which TensorBoard overlays on one chart.

  Built on tensorboardX's synchronous EventsWriter and summary protos rather
  than SummaryWriter, whose flush() does not drain its background queue: a
  kill -9 right after a checkpoint would otherwise lose epochs that the
  checkpoint already covers.
  """

  def __init__(self, logdir: str, hparams: dict, *, resume_epoch: int = 0,
               steps_per_epoch: int = 0):
    import_tensorboardx()
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto import event_pb2
    from tensorboardX.proto.plugin_hparams_pb2 import SessionStartInfo

    self._event_pb2 = event_pb2
    self.logdir = logdir
    self.writers = {}
    # steps/ holds StepLoss, whose x is the training step: TensorBoard purges by step, per
    # run, so it needs its own run to be purged at the resumed epoch's last step.
    for sub, unit in (("", 1), ("train", 1), ("validation", 1), ("steps", steps_per_epoch)):
      if not unit:
        continue
      d = os.path.join(logdir, sub)
      os.makedirs(d, exist_ok=True)
      self.writers[sub] = EventsWriter(os.path.join(d, "events"), f".{os.getpid()}")
      if resume_epoch:
        # TensorBoard's purge: points after the resumed epoch from the killed run are dropped.
        self._write(sub, event_pb2.Event(step=resume_epoch * unit + 1,
                                         session_log=event_pb2.SessionLog(
                                             status=event_pb2.SessionLog.START)))
    # The run's HParams session, replaced on a resume (--epochs may have grown); no end, so
    # no status, until `end` says how it ended: a killed run never shows as a success.
    # (add_hparams() would open a stray sub-run.)
    start = SessionStartInfo()
    for k, v in hparams.items():
      _set_value(start.hparams[k], v)
    self._start = _hparams_summary("_hparams_/session_start_info", session_start_info=start)
    write_hparams(logdir, [self._start])
    self.flush()

  def end(self, status: str) -> None:
    """The session's end: 'STATUS_SUCCESS' or 'STATUS_FAILURE' (diverged)."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import SessionEndInfo

    info = SessionEndInfo(status=Status.Value(status), end_time_secs=time.time())
    write_hparams(self.logdir, [self._start, _hparams_summary("_hparams_/session_end_info",
                                                             session_end_info=info)])

  def _write(self, sub: str, event) -> None:
    event.wall_time = time.time()
    self.writers[sub].write_event(event)

  def log(self, epoch: int, metrics: dict) -> None:
    from tensorboardX.summary import scalar

    for k, v in metrics.items():
      if k in TAGS and math.isfinite(v):
        self._write("", self._event_pb2.Event(step=epoch, summary=scalar(TAGS[k], v)))
        sub, tag = OVERLAY[k]
        self._write(sub, self._event_pb2.Event(step=epoch, summary=scalar(tag, v)))

  def log_rate(self, epoch: int, rate: float) -> None:
    """The learning rate at the epoch's last step (the schedule, a search's changes)."""
    self.log_scalar(epoch, "LearningRate", rate)

  def log_scalar(self, epoch: int, tag: str, value: float, sub: str = "") -> None:
    from tensorboardX.summary import scalar

    self._write(sub, self._event_pb2.Event(step=epoch, summary=scalar(tag, value)))

  def log_histogram(self, epoch: int, tag: str, s: dict) -> None:
    """One histogram from its moments and bucket counts (tb_detail computes them)."""
    from tensorboardX.summary import histogram_raw

    h = histogram_raw(tag, float(s["min"]), float(s["max"]), float(s["num"]), float(s["sum"]),
                      float(s["sum_squares"]), [float(x) for x in s["limits"]],
                      [float(x) for x in s["counts"]])
    self._write("", self._event_pb2.Event(step=epoch, summary=h))

  def flush(self) -> None:
    for w in self.writers.values():
      w.flush()

  def close(self) -> None:
    for w in self.writers.values():
      w.close()


def empty_history() -> dict:
  """A member's history before its first epoch: one list per recorded quantity."""
  return {k: [] for k in ("epoch", "step", "seconds", *METRICS)}


def over_seeds(histories: list[dict], key: str, x_key: str = "epoch"):
  """(x_N, mean_N, std_N) of `key` over the seeds that reached each entry.

  The one place seeds are averaged: a seed that diverged early stops counting
  where its history ends. x is the mean of `x_key` over the same seeds.
  """
  n = max((len(h.get(key, [])) for h in histories), default=0)
  xs, mu, sd = [], [], []
  for i in range(n):
    alive = [h for h in histories if len(h.get(key, [])) > i]
    vals = [h[key][i] for h in alive]
    xs.append(float(np.mean([h[x_key][i] for h in alive])))
    mu.append(float(np.mean(vals)))
    sd.append(float(np.std(vals)))
  return np.asarray(xs), np.asarray(mu), np.asarray(sd)


def aggregate(histories: list[dict]) -> dict:
  """Mean history over seeds, epoch by epoch (see `over_seeds`)."""
  out = {}
  for k in empty_history():
    _, mu, _ = over_seeds(histories, k)
    out[k] = [int(v) for v in mu] if k in ("epoch", "step") else [float(v) for v in mu]
  return {k: v for k, v in out.items() if v or k in ("epoch", "step", "seconds")}


def summary_table(results: dict) -> str:
  rows = ["| variant | train acc | val acc (mean ± std) | best val acc (epoch) | wall s | diverged |",
          "|---|---|---|---|---|---|"]
  for v in results["variants"]:
    f, s = v["final"], v["final_std"]
    tr = "–" if f["train_accuracy"] is None else f"{f['train_accuracy']:.4f}"
    several = v["seeds"] > 1 and s["val_accuracy"] is not None
    spread = f" ± {s['val_accuracy']:.4f}" if several else ""
    va = "–" if f["val_accuracy"] is None else f"{f['val_accuracy']:.4f}{spread}"
    best = (f"{v['best']['val_accuracy']:.4f} ({v['best']['epoch']})" if v.get("best") else "–")
    div = f"yes (epoch {v['diverged_epoch']})" if v["diverged"] else "no"
    rows.append(f"| {v['name']} | {tr} | {va} | {best} | {v['wall_seconds']:.1f} | {div} |")
  return "\n".join(rows)
