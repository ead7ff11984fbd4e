"""Pure training functions: the step, the scanned epoch, and a group of members.

Everything here is a function of pytrees. A *group* is M members (seeds, and
variants that differ only in values) stacked on a leading axis and trained by
one jitted program: `vmap` (or `lax.map`) over members of a `lax.scan` over steps, inside a
`lax.scan` over epochs. The dataset is an argument of that program, resident on
the device; per-epoch metrics are the only thing that comes back.

Randomness: a member's key is PRNGKey(seed). Init folds in INIT; the epoch's
shuffle folds in (SHUFFLE, epoch); the step folds in (STEP, global step). So a
run is a pure function of its config and can resume at any epoch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from dl101_jax.core.augment import augment, tta_logits
from dl101_jax.core.augment import cutout as cut_square
from dl101_jax.core.device_data import DeviceData
from dl101_jax.core.member_state import (FLIP, SHUFFLE, STEP, TrainState, lookahead_step,
                                    model_variables)
from dl101_jax.core.losses import masked_mean, per_example_correct, per_example_loss
from dl101_jax.core.optim import penalty

Metrics = dict[str, jax.Array]
CUTOUT = 4  # fold_in tag of cutout's draws within a step's augmentation key (augment uses 3)


def training_inputs(key: jax.Array, x_BxHxWxC: jax.Array, *, flip: bool, rotate: float,
                    translate: int = 0, normalize: Callable | None = None,
                    flip_B: jax.Array | None = None, cutout: int = 0) -> jax.Array:
  """Augment (flip, rotate, translate), then normalize when `normalize` is given, then
  cut out a square (`cutout`), always on normalized inputs so that it is the mean.

  TFLearn's order (tflearn/data_flow.py, fill_feed_dict_queue: ImageAugmentation,
  then ImagePreprocessing): rotation fills the corners with pixel value 0, black,
  which normalization then maps to -mean/std. Without `normalize`, x is taken as
  already normalized, so the corners take the mean colour.
  """
  if flip or rotate > 0 or translate > 0:
    x_BxHxWxC = augment(key, x_BxHxWxC, flip=flip, max_degrees=rotate, max_shift=translate,
                        flip_B=flip_B)
  x_BxHxWxC = x_BxHxWxC if normalize is None else normalize(x_BxHxWxC)
  if cutout:
    x_BxHxWxC = cut_square(jax.random.fold_in(key, CUTOUT), x_BxHxWxC, cutout)
  return x_BxHxWxC


def make_train_step(loss: str, *, flip: bool = False, rotate: float = 0.0,
                    translate: int = 0, cutout: int = 0, label_smoothing: float = 0.0,
                    ema: float = 0.0, lookahead: int = 0, total_steps: int = 0,
                    batch_sharding: Any = None, normalize: Callable | None = None) -> Callable:
  """Returns train_step(state, batch, key) -> (state, metrics).

  batch: {'x': inputs, 'y': labels, 'mask' (optional): 1 real, 0 padding, 'flip'
  (optional): which images to mirror, instead of random flips}. The
  inputs are normalized already, or raw when `normalize` is given (applied after
  augmentation, see `training_inputs`). Augmentation (training only) and dropout
  draw from fold_in(key, state.step). With `label_smoothing`, the cross-entropy's
  targets are smoothed (optax.smooth_labels); the reported loss is that objective.
  With `ema` (a decay per step), state.eval_params is the params' bias-corrected
  moving average (optax.ema). With `lookahead` (a period in steps), state.eval_params are
  airbench94's Lookahead slow weights (`lookahead_step`), over `total_steps`.
  """

  def train_step(state: TrainState, batch: dict, key: jax.Array):
    key = jax.random.fold_in(key, state.step)
    k_aug, k_drop = jax.random.split(key)
    x = batch["x"]
    if batch_sharding is not None:
      x = jax.lax.with_sharding_constraint(x, batch_sharding)
    x = training_inputs(k_aug, x, flip=flip, rotate=rotate, translate=translate,
                        normalize=normalize, flip_B=batch.get("flip"), cutout=cutout)
    y = batch["y"]
    w = batch.get("mask", jnp.ones(x.shape[0], jnp.float32))

    def objective(params):
      # The fast weights' own running statistics (model_variables gives the evaluated ones).
      variables = {"params": params, **({"batch_stats": state.batch_stats}
                                        if state.batch_stats else {})}
      # Training mode: BatchNorm normalizes with this batch's statistics (over the global
      # batch when it is sharded: the mean is a reduction over the whole batch axis) and
      # returns its updated running averages. A padded last batch's repeats count in them.
      out, updates = state.apply_fn(variables, x, train=True, dropout_rate=state.hp["dropout"],
                                    rngs={"dropout": k_drop}, mutable=["batch_stats"])
      data_loss = masked_mean(per_example_loss(loss, out, y, label_smoothing), w)
      return data_loss + penalty(params, state.hp), (data_loss, out, updates)

    (_, (data_loss, out, updates)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
    if ema:
      average, average_state = optax.ema(ema, debias=True).update(state.params,
                                                                  state.average_state)
      state = state.replace(eval_params=average, average_state=average_state)
    if lookahead:
      state = lookahead_step(state, lookahead, total_steps)
    acc = masked_mean(per_example_correct(out, y), w)
    return state, {"loss": data_loss, "accuracy": acc, "count": jnp.sum(w)}

  return train_step


def make_eval_step(apply_fn: Callable, loss: str, tta: int = 0) -> Callable:
  """Returns eval_step(variables, batch) -> metrics and "pred" (each example's predicted
  class); deterministic (no dropout, no training augmentation, BatchNorm's running
  statistics), with test-time augmentation at level `tta` (augment.tta_logits).
  variables: `model_variables(state)`."""

  def eval_step(variables: dict, batch: dict) -> Metrics:
    out = tta_logits(lambda x: apply_fn(variables, x, train=False), batch["x"], tta)
    w = batch.get("mask", jnp.ones(batch["x"].shape[0], jnp.float32))
    return {"loss": masked_mean(per_example_loss(loss, out, batch["y"]), w),
            "accuracy": masked_mean(per_example_correct(out, batch["y"]), w),
            "count": jnp.sum(w), "pred": jnp.argmax(out, axis=-1).astype(jnp.int32)}

  return eval_step


def padded_batches(order_N: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
  """Split indices into S x B batches; the last is padded with repeats and masked out."""
  n = order_N.shape[0]
  steps = -(-n // batch_size)
  pad = steps * batch_size - n
  # Repeats cycle through the order, so a batch larger than the data is padded too.
  idx = jnp.concatenate([order_N, jnp.resize(order_N, pad)]) if pad else order_N
  mask = (jnp.arange(steps * batch_size) < n).astype(jnp.float32)
  return idx.reshape(steps, batch_size), mask.reshape(steps, batch_size)


def _weighted(metrics_S: Metrics) -> Metrics:
  """Per-example means over an epoch from per-step means and counts."""
  n = metrics_S["count"]
  total = jnp.maximum(jnp.sum(n), 1.0)
  return {k: jnp.sum(v * n) / total for k, v in metrics_S.items() if k != "count"}


@dataclasses.dataclass(frozen=True)
class Program:
  """Static description of a group's compiled program."""

  loss: str
  batch_size: int
  eval_batch_size: int
  flip: bool = False
  rotate: float = 0.0
  translate: int = 0  # random translation, pixels each way
  cutout: int = 0  # side of the square cut out of each training image; 0: none
  label_smoothing: float = 0.0
  ema: float = 0.0  # decay per step of the params' moving average; 0: none
  lookahead: int = 0  # steps between Lookahead's synchronizations; 0: none
  total_steps: int = 0  # of the run (Lookahead's schedule)
  alternate_flip: bool = False  # airbench's flips: a fixed random half, then all, alternating
  tta: int = 0  # test-time augmentation level in evaluation (augment.tta_logits)
  augment_first: bool = True  # TFLearn's order: augment raw pixels, then normalize
  batch_sharding: Any = None  # NamedSharding over the 'data' mesh axis, or None
  # The mesh axis the stacked members are sharded on ('members'), or None: vmap's
  # spmd_axis_name, so a batch's 'data' constraint keeps each member on its own devices.
  member_axis: str | None = None
  # Members one after another (lax.map) instead of vmapped side by side: each member runs
  # the same unbatched code whatever the group's width (config.member_loop).
  member_loop: bool = False
  # In-epoch progress: every `progress_every` steps the program calls the host's
  # on_progress(epoch, steps_done) (jax.debug.callback, once per tick, not per member).
  progress_every: int = 0
  on_progress: Callable[[Any, Any], None] | None = None
  # The epoch's steps in this many runs of nearly equal length, each run's mean training
  # loss returned with the epoch's metrics (TensorBoard's curve within epochs); 0: none.
  loss_chunks: int = 0


def alternating_flips(key: jax.Array, n: int, epoch: jax.Array) -> jax.Array:
  """airbench's alternating flip: each of the n images has a fixed random orientation for
  the run, and on odd epochs all are mirrored: each is seen both ways every two epochs."""
  return jax.random.bernoulli(jax.random.fold_in(key, FLIP), 0.5, (n,)) ^ (epoch % 2 == 1)


def train_epoch(prog: Program, state: TrainState, key: jax.Array, epoch: jax.Array,
                data: DeviceData) -> tuple[TrainState, Metrics]:
  """One member, one epoch: shuffle by (seed, epoch), then lax.scan the steps."""
  raw = prog.augment_first and (prog.flip or prog.rotate > 0 or prog.translate > 0)
  step = make_train_step(prog.loss, flip=prog.flip, rotate=prog.rotate,
                         translate=prog.translate, cutout=prog.cutout,
                         label_smoothing=prog.label_smoothing,
                         ema=prog.ema, lookahead=prog.lookahead, total_steps=prog.total_steps,
                         batch_sharding=prog.batch_sharding,
                         normalize=data.normalize if raw else None)
  prepare = (lambda x: x.astype(jnp.float32)) if raw else data.normalize
  order = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, SHUFFLE), epoch),
                                 data.x_train.shape[0])
  idx_SxB, mask_SxB = padded_batches(order, prog.batch_size)
  step_key = jax.random.fold_in(key, STEP)
  if prog.flip and prog.alternate_flip:
    flip_N = alternating_flips(key, data.x_train.shape[0], epoch)

  def body(state, ism):
    s, i_B, m_B = ism
    batch = {"x": prepare(data.x_train[i_B]), "y": data.y_train[i_B], "mask": m_B}
    if prog.flip and prog.alternate_flip:
      batch["flip"] = flip_N[i_B]
    if prog.progress_every:
      # The step index is the same for every member, so under vmap this stays one
      # cond and the host hears one tick, not one per member.
      jax.lax.cond((s + 1) % prog.progress_every == 0,
                   lambda: jax.debug.callback(prog.on_progress, epoch, s + 1), lambda: None)
    return step(state, batch, step_key)

  steps_S = jnp.arange(idx_SxB.shape[0])
  state, metrics_S = jax.lax.scan(body, state, (steps_S, idx_SxB, mask_SxB))
  out = _weighted(metrics_S)
  if prog.loss_chunks:
    out["loss_chunks"] = chunk_means(metrics_S, prog.loss_chunks)
  return state, out


def chunk_means(metrics_S: Metrics, k: int) -> jax.Array:
  """The per-example mean loss of each of k runs of consecutive steps (step s is in run
  s * k // S; fewer runs when an epoch has fewer than k steps)."""
  n_S = metrics_S["count"]
  steps = n_S.shape[0]
  k = min(k, steps)
  run_S = jnp.arange(steps) * k // steps
  total_K = jax.ops.segment_sum(metrics_S["loss"] * n_S, run_S, num_segments=k)
  return total_K / jnp.maximum(jax.ops.segment_sum(n_S, run_S, num_segments=k), 1.0)


def evaluate(prog: Program, apply_fn: Callable, variables: dict, data: DeviceData,
             predictions: bool = False) -> Metrics:
  """Validation over the whole test split at prog.tta, batched and scanned, nothing
  dropped: loss, accuracy and count; with `predictions`, also "pred", every example's
  predicted class (N int32). The one evaluation, in training and after it."""
  n = data.x_val.shape[0]
  bs = min(prog.eval_batch_size, n)
  idx_SxB, mask_SxB = padded_batches(jnp.arange(n), bs)
  step = make_eval_step(apply_fn, prog.loss, prog.tta)

  def body(_, im):
    i_B, m_B = im
    x = data.normalize(data.x_val[i_B])
    if prog.batch_sharding is not None:
      x = jax.lax.with_sharding_constraint(x, prog.batch_sharding)
    m = step(variables, {"x": x, "y": data.y_val[i_B], "mask": m_B})
    pred = m.pop("pred")
    return None, (m, pred if predictions else None)  # per-epoch validation: no labels kept

  _, (metrics_S, pred_SxB) = jax.lax.scan(body, None, (idx_SxB, mask_SxB))
  out = _weighted(metrics_S)
  if predictions:
    out["pred"] = pred_SxB.reshape(-1)[:n]
  return out


def run_epochs(prog: Program, states: TrainState, keys_M: jax.Array, epoch0: jax.Array,
               data: DeviceData, n_epochs: int) -> tuple[TrainState, Metrics]:
  """n_epochs of training (+ validation) for all M members; metrics are n_epochs x M."""

  def members_epoch(states, epoch):
    if prog.member_loop:
      return jax.lax.map(lambda sk: train_epoch(prog, *sk, epoch, data), (states, keys_M))
    if keys_M.shape[0] == 1:
      # One member: skip vmap, whose batched dots cost ~14% on CPU (measured).
      one = jax.tree.map(lambda a: a[0], states)
      one, tm = train_epoch(prog, one, keys_M[0], epoch, data)
      return jax.tree.map(lambda a: a[None], one), jax.tree.map(lambda a: a[None], tm)
    return jax.vmap(functools.partial(train_epoch, prog), in_axes=(0, 0, None, None),
                    spmd_axis_name=prog.member_axis)(states, keys_M, epoch, data)

  def one_epoch(states, epoch):
    states, tm = members_epoch(states, epoch)
    out = {"train_loss": tm["loss"], "train_accuracy": tm["accuracy"]}
    if prog.loss_chunks:
      out["train_loss_chunks"] = tm["loss_chunks"]  # M x K
    if data.x_val is not None:
      ev = lambda v: evaluate(prog, states.apply_fn, v, data)
      vm = (jax.lax.map(ev, model_variables(states)) if prog.member_loop else
            jax.vmap(ev, spmd_axis_name=prog.member_axis)(model_variables(states)))
      out.update(val_loss=vm["loss"], val_accuracy=vm["accuracy"])
    return states, out

  return jax.lax.scan(one_epoch, states, epoch0 + jnp.arange(n_epochs))


def compile_run_epochs(prog: Program) -> Callable:
  """jit(run_epochs) for one group; the states are donated (updated in place)."""
  fn = lambda states, keys, epoch0, data, n_epochs: run_epochs(
      prog, states, keys, epoch0, data, n_epochs)
  return jax.jit(fn, static_argnames="n_epochs", donate_argnums=0)
