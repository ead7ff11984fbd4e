"""results.json's content: what a run says about itself (data, devices, software, each
variant's seeds and costs, where the best variant errs)."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import numpy as np

from dl101_jax.config import Config
from dl101_jax.host import data as data_lib
from dl101_jax.host import evaluation, report
from dl101_jax.host.group import GroupResult, group_name
from dl101_jax.host.report import METRICS

PICTURED = 32  # validation images drawn in predictions.png


def software() -> dict:
  """Versions that say what computed these results, and the git commit when in a checkout."""
  import flax
  import jax
  import jaxlib
  import optax

  out = {"python": platform.python_version(), "jax": jax.__version__,
         "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__}
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                       text=True, timeout=5, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    out["git_commit"] = None
  return out


def run_json(config: Config, ds: data_lib.Dataset, rt: Any,
                  groups: list[GroupResult]) -> dict:
  """results.json's run-wide part: the data, devices, software, config and programs."""
  return {
      "experiment": config.name,
      "dataset": {"name": ds.name, "train_size": ds.train_size,
                  "test_size": len(ds.test_split[1]) if ds.test_split else ds.val_size,
                  "validation_size": ds.val_size,
                  "validation": (f"{ds.val_size} examples held out of the training set"
                                 if ds.test_split is not None else "the test split")},
      "devices": rt.num_devices, "processes": rt.processes, "platform": rt.platform,
      "mesh": rt.axes,
      "software": software(),
      "config": config.to_dict(),
      "variants": [],
      # One entry per compiled program: its variants and seconds (training; compiling apart).
      "groups": [{"name": group_name(g.members), "members": len(g.members),
                  "seeds": sorted({m.config.seed for m in g.members}),
                  "wall_seconds": round(g.wall_seconds, 3),
                  "compile_seconds": round(g.compile_seconds, 3),
                  # Where the members lived: the most bytes of states one device held.
                  "state_bytes_per_device": g.state_bytes_per_device} for g in groups],
  }


def variant_result(name: str, histories: list[dict], diverged: list[int | None],
                   wall_seconds: float) -> dict:
  """One entry of results.json 'variants' from its seeds' histories."""
  finals = [{k: h[k][-1] for k in METRICS if h.get(k)} for h in histories if h["epoch"]]
  # None where nothing was measured (no validation split, or diverged in epoch 1).
  have = lambda k: bool(finals) and all(k in f for f in finals)
  final = {k: float(np.mean([f[k] for f in finals])) if have(k) else None for k in METRICS}
  final_std = {k: float(np.std([f[k] for f in finals])) if have(k) else None for k in METRICS}
  trained = any(h["epoch"] for h in histories)
  hist = report.aggregate(histories) if trained else report.empty_history()
  div = [e for e in diverged if e is not None]
  best = None
  if hist.get("val_accuracy"):
    i = int(np.argmax(hist["val_accuracy"]))
    best = {"val_accuracy": hist["val_accuracy"][i], "epoch": hist["epoch"][i]}
  return {"name": name, "seeds": len(histories), "diverged": bool(div),
          "diverged_epoch": min(div) if div else None, "diverged_seeds": len(div),
          "wall_seconds": round(wall_seconds, 3), "final": final, "final_std": final_std,
          "best": best, "history": hist, "per_seed": histories}


def variant_json(name: str, vc: Config, overrides: dict, groups: list[GroupResult]) -> dict:
  """One variant's entry in results.json: its seeds' histories, costs and configs."""
  hs, div, wall, comp = [], [], 0.0, 0.0
  for g in groups:
    mine = [i for i, m in enumerate(g.members) if m.variant == name]
    hs += [g.histories[i] for i in mine]
    div += [g.diverged[i] for i in mine]
    if mine:  # members of one group share its wall time (training, compile excluded);
      wall += g.wall_seconds  # --seeds auto trains a variant's seeds in several groups
      comp += g.compile_seconds
  v = variant_result(name, hs, div, wall)
  v["compile_seconds"] = round(comp, 3)
  v["parameters"] = next(g.parameters for g in groups if any(m.variant == name
                                                              for m in g.members))
  v["best_epoch_per_seed"] = [int(h["epoch"][int(np.argmax(h["val_accuracy"]))])
                              if h.get("val_accuracy") else None for h in hs]
  v["config"] = {"overrides": overrides, "effective": vc.to_dict()}
  return v


def where_it_errs(out: dict, groups: list[GroupResult], ds: data_lib.Dataset, dev: Any) -> dict:
  """Per-class validation accuracy for every variant (into `out`), and the best variant's
  confusion counts and predictions, from each seed's final model."""
  names = list(ds.class_names) or [str(i) for i in range(ds.num_classes)]
  errs = evaluation.variant_errors(groups, dev, ds.y_val, ds.num_classes)
  for v in out["variants"]:
    e = errs.get(v["name"])
    if e is not None:
      # A class without validation images has no accuracy: null, "n/a" in the tables.
      none_if_nan = lambda a: [None if np.isnan(x) else float(x) for x in a]
      v["per_class_accuracy"] = dict(zip(names, none_if_nan(e.per_class_KxS.mean(axis=1))))
      v["per_class_accuracy_std"] = dict(zip(names, none_if_nan(e.per_class_KxS.std(axis=1))))
  scored = [v for v in out["variants"] if v["name"] in errs and v["final"]["val_accuracy"]]
  if not scored:
    return {}
  best = max(scored, key=lambda v: v["final"]["val_accuracy"])["name"]
  return {"errors": {"classes": names, "best_variant": best,
                     "confusion": errs[best].confusion_KxK.tolist(),
                     "confusion_note": "rows: true class, columns: predicted; summed over seeds",
                     "predictions_first_seed": errs[best].first_seed_pred_N[:PICTURED].tolist()}}



