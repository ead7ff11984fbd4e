"""What a trained group is and where it errs: layer tables, per-class accuracy, confusion.

`evaluate_members` is the one evaluation after training (results, the test split, the
ladder's scoring, these tables): `train.evaluate`, the function each epoch's validation
runs, vmapped over a group's members in one jitted pass; only each member's metrics and
its N predicted labels come back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from dl101_jax.core import member_state, train
from dl101_jax.host import placement
from dl101_jax.host.parallel import to_host


def layer_table(model: Any, sample_x: jax.Array) -> tuple[list[str], int]:
  """Markdown lines: each parameterized layer, its output shape and parameter count; the total.

  Shapes come from jax.eval_shape (nothing is computed), counts from the params tree.
  """
  def shapes():
    params = model.init(jax.random.PRNGKey(0), sample_x)
    _, inter = model.apply(params, sample_x, capture_intermediates=True, mutable=["intermediates"])
    return params["params"], inter["intermediates"]

  params, inter = jax.eval_shape(shapes)
  rows = ["| layer | output shape | parameters |", "|---|---|---|"]
  total = 0
  for name, leaves in params.items():
    count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(leaves))
    total += count
    # A submodule's output, or what a module sowed under a parameter's name.
    entry = inter.get(name, {})
    out = (entry.get("__call__", (None,)) if isinstance(entry, dict) else entry)[0]
    shape = "x".join(str(d) for d in out.shape[1:]) if out is not None else "?"
    rows.append(f"| {name} | {shape} | {count:,} |")
  rows.append(f"| total | | {total:,} |")
  return rows, total


def evaluate_members(group: Any, data: train.DeviceData, *, variant: str | None = None,
                     tta: int | None = None, split: tuple | None = None) -> dict[str, np.ndarray]:
  """Loss, accuracy (M) and predicted classes ("pred", M x N) of the group's surviving
  members (those of `variant`, if given), with the weights each evaluates (Lookahead's slow
  ones, the EMA), at test-time augmentation `tta` (default: the config's), on the
  validation split of `data` or on `split` = (x, y). Empty (M = 0) when none survive."""
  alive = group.alive if group.states is not None else []
  idx = [j for j, i in enumerate(alive) if variant is None or group.members[i].variant == variant]
  if not idx:
    return {"loss": np.zeros(0), "accuracy": np.zeros(0), "pred": np.zeros((0, 0), np.int32)}
  if split is not None:
    data = dataclasses.replace(data, x_val=jax.device_put(split[0]),
                               y_val=jax.device_put(split[1]))
  # The mesh the states live on (a finished group's: split over 'members' as far as their
  # number allows, placement.exact): each device evaluates its own
  # members (axis 'members', k of them) on its part of each batch (axis 'data', d), as in
  # training; unconstrained, every device would evaluate everything. The metrics come back
  # replicated, as to_host reads them.
  mesh = getattr(jax.tree.leaves(group.states)[0].sharding, "mesh", None)
  k, d = (int(dict(mesh.shape).get(a, 1)) if mesh is not None else 1 for a in ("members", "data"))
  ix_M = placement.padded(idx, k)  # to k's multiple, with copies of the last
  c = group.members[0].config
  bs = -(-min(c.eval_batch_size, data.x_val.shape[0]) // d) * d  # as group.py's, d's multiple
  prog = train.Program(loss=c.loss, batch_size=c.batch_size, tta=c.tta if tta is None else tta,
                       eval_batch_size=bs,
                       batch_sharding=NamedSharding(mesh, P("data")) if d > 1 else None)
  apply_fn = group.states.apply_fn

  def fn(states, ix_M):  # the members' selection inside: one program, not a gather per leaf
    variables = jax.tree.map(lambda a: a[ix_M], member_state.model_variables(states))
    if k > 1:
      variables = jax.lax.with_sharding_constraint(variables, NamedSharding(mesh, P("members")))
    return jax.vmap(lambda v: train.evaluate(prog, apply_fn, v, data, predictions=True),
                    spmd_axis_name="members" if k > 1 else None)(variables)

  out = jax.jit(fn, out_shardings=NamedSharding(mesh, P()) if k * d > 1 else None)
  return jax.tree.map(lambda a: a[:len(idx)], to_host(out(group.states, ix_M)))


def confusion(pred_N: np.ndarray, y_N: np.ndarray, k: int) -> np.ndarray:
  """K x K counts: row = true class, column = predicted class."""
  return np.bincount(y_N * k + pred_N, minlength=k * k).reshape(k, k)


def per_class_accuracy(pred_N: np.ndarray, y_N: np.ndarray, k: int) -> np.ndarray:
  """K accuracies; NaN for a class with no example in y_N (not 0: nothing was wrong)."""
  cm = confusion(pred_N, y_N, k)
  n_K = cm.sum(axis=1)
  return np.where(n_K > 0, np.diag(cm) / np.maximum(n_K, 1), np.nan)


@dataclasses.dataclass
class VariantErrors:
  """One variant's per-class accuracy over its seeds, and its summed confusion counts."""

  per_class_KxS: np.ndarray  # K classes x S seeds
  confusion_KxK: np.ndarray  # summed over seeds
  first_seed_pred_N: np.ndarray


def variant_errors(groups: list[Any], data: train.DeviceData, y_N: np.ndarray,
                   k: int) -> dict[str, VariantErrors]:
  """Per variant: per-class accuracy of each surviving seed's final model, and confusion."""
  out: dict[str, VariantErrors] = {}
  for g in groups:
    if g.states is None:  # every member diverged
      continue
    pred_MxN = evaluate_members(g, data)["pred"]
    for j, i in enumerate(g.alive):
      v = g.members[i].variant
      acc = per_class_accuracy(pred_MxN[j], y_N, k)
      cm = confusion(pred_MxN[j], y_N, k)
      if v not in out:
        out[v] = VariantErrors(acc[:, None], cm, pred_MxN[j])
      else:
        e = out[v]
        e.per_class_KxS = np.concatenate([e.per_class_KxS, acc[:, None]], axis=1)
        e.confusion_KxK = e.confusion_KxK + cm
  return out


def per_class_table(variants: list[dict], class_names: list[str]) -> str:
  """Markdown: one row per class, one column per variant (mean ± std over seeds)."""
  have = [v for v in variants if v.get("per_class_accuracy")]
  if not have:
    return ""
  rows = ["| class | " + " | ".join(v["name"] for v in have) + " |",
          "|---|" + "---|" * len(have)]
  for c in class_names:
    cells = []
    for v in have:
      m, s = v["per_class_accuracy"][c], v["per_class_accuracy_std"][c]
      if m is None:  # no validation image of this class
        cells.append("n/a")
        continue
      cells.append(f"{m:.3f}" + (f" ± {s:.3f}" if v["seeds"] > 1 else ""))
    rows.append(f"| {c} | " + " | ".join(cells) + " |")
  return "\n".join(rows)
