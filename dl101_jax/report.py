"""What a run tells the world: TFLearn-style console lines, TensorBoard, results.json, summary.md.

Pictures are in plots.py (matplotlib is imported only when one is drawn).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, TextIO

import numpy as np

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
# The tutorial's TensorBoard tags.
TAGS = {"train_loss": "Loss", "train_accuracy": "Accuracy", "val_loss": "Loss/Validation",
        "val_accuracy": "Accuracy/Validation"}


def step_line(step: int, loss: float, seconds: float) -> str:
  return f"Training Step: {step}  | total loss: {loss:.5f} | time: {seconds:.3f}s"


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


class Console:
  """One live block updated in place on a terminal; every `every` epochs (and the last) otherwise."""

  def __init__(self, epochs: int, every: int, stream: TextIO | None = None,
               tty: bool | None = None, enabled: bool = True):
    self.stream = stream or sys.stdout
    self.tty = self.stream.isatty() if tty is None else tty
    self.epochs, self.every, self.enabled = epochs, every, enabled
    self._shown = 0

  def show(self, epoch: int, lines: list[str], *, force: bool = False) -> None:
    if not self.enabled:
      return
    if self.tty:
      up = f"\x1b[{self._shown}F\x1b[J" if self._shown else ""
      self.stream.write(up + "\n".join(lines) + "\n")
      self._shown = len(lines)
    elif force or epoch % self.every == 0 or epoch == self.epochs:
      self.stream.write("\n".join(lines) + "\n")
    self.stream.flush()

  def say(self, text: str) -> None:
    if self.enabled:
      self.stream.write(text + "\n")
      self.stream.flush()
      self._shown = 0  # the live block is above this; start a new one


def _import_tensorboardx():
  """Import tensorboardX without letting it import torch.

  tensorboardX's writer does `try: import torch`, which costs ~0.9 s where torch is
  installed (a benchmark venv) and is never needed here: an ImportError is its
  designed fallback, so we make `import torch` fail for the duration.
  """
  if "tensorboardX.summary" in sys.modules or "torch" in sys.modules:
    return
  sys.modules["torch"] = None  # type: ignore[assignment]
  try:
    import tensorboardX.summary  # noqa: F401
  finally:
    del sys.modules["torch"]


def _hparam_value(v: Any):
  if isinstance(v, bool) or isinstance(v, (int, float, str)):
    return v
  return str(v)


class TensorBoardRun:
  """Per-epoch scalars of one run (variant, seed) under <workdir>/<run name>/.

  Built on tensorboardX's synchronous EventsWriter and summary protos rather
  than SummaryWriter, whose flush() does not drain its background queue: a
  kill -9 right after a checkpoint would otherwise lose epochs that the
  checkpoint already covers.
  """

  def __init__(self, logdir: str, hparams: dict, *, resume_epoch: int = 0):
    _import_tensorboardx()
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto import event_pb2
    from tensorboardX.summary import hparams as hp_summary

    self._event_pb2 = event_pb2
    os.makedirs(logdir, exist_ok=True)
    self.writer = EventsWriter(os.path.join(logdir, "events"), f".{os.getpid()}")
    if resume_epoch:
      # TensorBoard's purge: points at steps > resume_epoch from the killed run are dropped.
      self._write(event_pb2.Event(step=resume_epoch + 1, session_log=event_pb2.SessionLog(
          status=event_pb2.SessionLog.START)))
    else:
      # The hparams of this run, with the validation scalars as its metrics. (add_hparams()
      # would open a stray timestamped sub-run instead.)
      for summary in hp_summary({k: _hparam_value(v) for k, v in hparams.items()},
                                {TAGS["val_accuracy"]: 0.0, TAGS["val_loss"]: 0.0}):
        self._write(event_pb2.Event(summary=summary))
    self.writer.flush()

  def _write(self, event) -> None:
    event.wall_time = time.time()
    self.writer.write_event(event)

  def log(self, epoch: int, metrics: dict) -> None:
    from tensorboardX.summary import scalar

    for k, v in metrics.items():
      if k in TAGS and math.isfinite(v):
        self._write(self._event_pb2.Event(step=epoch, summary=scalar(TAGS[k], v)))

  def flush(self) -> None:
    self.writer.flush()

  def close(self) -> None:
    self.writer.close()


def aggregate(histories: list[dict]) -> dict:
  """Mean history over seeds, epoch by epoch (seeds that diverged early stop counting)."""
  length = max(len(h["epoch"]) for h in histories)
  out = {k: [] for k in ("epoch", "step", "seconds", *METRICS)}
  for i in range(length):
    alive = [h for h in histories if len(h["epoch"]) > i]
    for k in out:
      vals = [h[k][i] for h in alive if len(h.get(k, [])) > i]
      if vals:
        out[k].append(int(vals[0]) if k in ("epoch", "step") else float(np.mean(vals)))
  return {k: v for k, v in out.items() if v or k in ("epoch", "step", "seconds")}


def variant_result(name: str, histories: list[dict], diverged: list[int | None],
                   wall_seconds: float) -> dict:
  """One entry of results.json 'variants' from its seeds' histories."""
  finals = [{k: h[k][-1] for k in METRICS if h.get(k)} for h in histories if h["epoch"]]
  # None where nothing was measured (no validation split, or diverged in epoch 1).
  have = lambda k: bool(finals) and all(k in f for f in finals)
  final = {k: float(np.mean([f[k] for f in finals])) if have(k) else None for k in METRICS}
  final_std = {k: float(np.std([f[k] for f in finals])) if have(k) else None for k in METRICS}
  hist = aggregate(histories) if any(h["epoch"] for h in histories) else {
      k: [] for k in ("epoch", "step", "seconds", *METRICS)}
  div = [e for e in diverged if e is not None]
  best = None
  if hist.get("val_accuracy"):
    i = int(np.argmax(hist["val_accuracy"]))
    best = {"val_accuracy": hist["val_accuracy"][i], "epoch": hist["epoch"][i]}
  return {"name": name, "seeds": len(histories), "diverged": bool(div),
          "diverged_epoch": min(div) if div else None, "diverged_seeds": len(div),
          "wall_seconds": round(wall_seconds, 3), "final": final, "final_std": final_std,
          "best": best, "history": hist, "per_seed": histories}


def summary_table(results: dict) -> str:
  rows = ["| variant | train acc | val acc (mean ± std) | best val acc (epoch) | wall s | diverged |",
          "|---|---|---|---|---|---|"]
  for v in results["variants"]:
    f, s = v["final"], v["final_std"]
    tr = "–" if f["train_accuracy"] is None else f"{f['train_accuracy']:.4f}"
    va = "–" if f["val_accuracy"] is None else f"{f['val_accuracy']:.4f} ± {s['val_accuracy']:.4f}"
    best = (f"{v['best']['val_accuracy']:.4f} ({v['best']['epoch']})" if v.get("best") else "–")
    div = f"yes (epoch {v['diverged_epoch']})" if v["diverged"] else "no"
    rows.append(f"| {v['name']} | {tr} | {va} | {best} | {v['wall_seconds']:.1f} | {div} |")
  return "\n".join(rows)


def write_json(path: str, obj: Any) -> None:
  """Atomic write (a killed process never leaves half a results.json)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, allow_nan=False)
    f.write("\n")
  os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
