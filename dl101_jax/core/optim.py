"""Optax update rules, TFLearn's L2 loss term, and decoupled weight decay.

Two kinds of regularization, kept apart on purpose:
  * `l2_penalty`: TFLearn's regularizer='L2', a loss term l2 * sum(w**2) / 2,
    so it passes through Adam's normalization like any gradient;
  * AdamW's decoupled decay: params -= lr * wd * params, outside the gradient.
Both touch kernels only, never biases; TFLearn's L2 skipped the output layer too.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

LABELS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "nesterov": "Nesterov", "muon": "Muon"}
# airbench94_muon's Muon: Nesterov momentum 0.6, then 3 Newton-Schulz steps (eps 1e-7).
MUON_MOMENTUM, MUON_NS_STEPS, MUON_EPS = 0.6, 3, 1e-7


def kernel_mask(params: Any, *, include_head: bool = True) -> Any:
  """True for every 'kernel' leaf (optionally not the output layer 'head')."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({
      k: k[-1] == "kernel" and (include_head or k[0] != "head") for k in flat})


def l2_penalty(params: Any) -> jax.Array:
  """sum(w**2) / 2 over the hidden kernels (conv and fc, not the output layer)."""
  mask = kernel_mask(params, include_head=False)
  leaves = [jnp.sum(jnp.square(p.astype(jnp.float32)))
            for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m]
  return 0.5 * sum(leaves) if leaves else jnp.zeros((), jnp.float32)


def l1_penalty(params: Any) -> jax.Array:
  """sum(|w|) over the same kernels as l2_penalty."""
  mask = kernel_mask(params, include_head=False)
  leaves = [jnp.sum(jnp.abs(p.astype(jnp.float32)))
            for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m]
  return sum(leaves) if leaves else jnp.zeros((), jnp.float32)


def penalty(params: Any, hp: dict[str, jax.Array]) -> jax.Array:
  """The loss terms a member's hyperparameters add to its data loss: TFLearn's L2 and L1
  (tflearn.regularizers: wd * tf.nn.l2_loss(w), wd * reduce_sum(|w|)) at hp["l2"], hp["l1"]."""
  return hp["l2"] * l2_penalty(params) + hp["l1"] * l1_penalty(params)


def schedule_factor(name: str, total_steps: int) -> optax.Schedule | None:
  """The learning-rate multiplier per step (None: constant).

  warmup_linear is airbench94's shape: 0.2x at step 0, rising linearly to 1x at 23% of
  training, then falling linearly to 0.07x at the last step.
  """
  if name == "constant":
    return None
  if name == "linear":  # airbench94_muon's: 1 at step 0, falling to 0 at total_steps
    return optax.linear_schedule(1.0, 0.0, max(total_steps, 1))
  peak = int(0.23 * total_steps)
  return optax.piecewise_interpolate_schedule(
      "linear", init_value=0.2, boundaries_and_scales={peak: 5.0, max(total_steps, peak + 1): 0.07})


def _nesterov(learning_rate, weight_decay, momentum=0.9, decay_mask=kernel_mask):
  # PyTorch's SGD(momentum, nesterov=True, weight_decay=wd), as airbench uses it: the
  # decay joins the gradient before the momentum; kernels only by default, like adamw's.
  return optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                     optax.sgd(learning_rate, momentum=momentum, nesterov=True))


def norm_bias_mask(params: Any) -> Any:
  """True for BatchNorm's shifts (a 'bias' in a module named bn* or *norm*)."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({
      k: k[-1] == "bias" and any(p.startswith("bn") or "norm" in p for p in k[:-1])
      for k in flat})


def whiten_bias_mask(params: Any) -> Any:
  """True for the airbench net's whitening bias."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({k: k == ("whiten_bias",) for k in flat})


def make_optimizer(name: str, schedule: str = "constant", total_steps: int = 0,
                   momentum: float = 0.9, norm_bias_lr: float = 1.0,
                   whiten_bias_steps: int = 0, decay: str = "kernels"
                   ) -> optax.GradientTransformation:
  """An optax transform whose learning rate (and decay) live in its state.

  `optax.inject_hyperparams` puts them in `opt_state.hyperparams`, so members
  of a vmapped group can each carry their own; the values given here are
  placeholders that `init_opt_state` overwrites. adam is adamw with decay 0:
  the update is identical, and adam and adamw variants can share a program.
  A `schedule` other than constant scales every update by its factor at the
  step (optax.scale_by_schedule), over `total_steps`; each member keeps its own peak.
  airbench94's parameter groups: `norm_bias_lr` multiplies BatchNorm shifts' updates,
  and the whitening bias stops after `whiten_bias_steps` steps (0: never).
  `decay`: which parameters nesterov's weight decay touches: "kernels" (the usual
  choice) or "all" (airbench94 decays every trained parameter).
  """
  if decay not in ("kernels", "all"):
    raise ValueError(f"unknown decay {decay!r}")
  if schedule != "constant" and total_steps < 1:
    raise ValueError(f"schedule {schedule!r} needs total_steps >= 1, got {total_steps}")
  factor = schedule_factor(schedule, total_steps)
  before, after = [], []
  if factor is not None:
    after.append(optax.scale_by_schedule(factor))
  if norm_bias_lr != 1.0:
    # airbench's bias_scaler "scales up learning rate (but not weight decay)". For the SGD
    # rules a scaled gradient ahead of the decay and momentum is exactly that (both are
    # linear); Adam would normalize a scaled gradient away, so there the update is scaled.
    scale = optax.masked(optax.scale(norm_bias_lr), norm_bias_mask)
    (after if name in ("adam", "adamw") else before).append(scale)
  if whiten_bias_steps:
    frozen_after = lambda count: (count < whiten_bias_steps).astype(jnp.float32)
    after.append(optax.masked(optax.scale_by_schedule(frozen_after), whiten_bias_mask))

  def scheduled(rule):
    if not before and not after:
      return rule
    # wraps: inject_hyperparams reads the rule's signature for its hyperparameter names.
    return functools.wraps(rule)(lambda *a, **k: optax.chain(*before, rule(*a, **k), *after))

  if name == "sgd":
    return optax.inject_hyperparams(scheduled(optax.sgd))(learning_rate=0.0)
  if name == "nesterov":
    return optax.inject_hyperparams(scheduled(_nesterov), static_args=("momentum", "decay_mask"))(
        learning_rate=0.0, weight_decay=0.0, momentum=momentum,
        decay_mask=kernel_mask if decay == "kernels" else None)
  if name == "muon":
    return _muon(factor, momentum, norm_bias_lr, whiten_bias_steps)
  if name in ("adam", "adamw"):
    # Only the learning rate and decay are state; the mask is a function, not a schedule.
    return optax.inject_hyperparams(scheduled(optax.adamw),
                                    static_args=("b1", "b2", "eps", "mask"))(
        learning_rate=0.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, mask=kernel_mask)
  raise ValueError(f"unknown optimizer {name!r}")


# The values make_optimizer injects as placeholders: each must come from the member.
PLACEHOLDERS = ("learning_rate", "weight_decay", "muon_lr")


def init_opt_state(tx: optax.GradientTransformation, params: Any, **given: Any) -> Any:
  """tx.init(params), with every injected hyperparameter that `given` names set to its
  value (a member's learning rate, weight decay, Muon's learning rate, ...)."""
  state = tx.init(params)
  # Every placeholder is set here, so make_optimizer's zeros never reach a step: a rule
  # whose value was not given is refused, not trained with the placeholder.
  # (optax's own numeric defaults, such as adamw's eps_root, are injected too and kept.)
  hp = dict(state.hyperparams)
  missing = [k for k in PLACEHOLDERS if k in hp and given.get(k) is None]
  if missing:
    raise ValueError(f"init_opt_state: no value given for {', '.join(missing)}")
  hp.update({k: jnp.asarray(v, jnp.float32) for k, v in given.items()
             if k in hp and v is not None})
  return state._replace(hyperparams=hp)


def muon_labels(params: Any) -> Any:
  """multi_transform's groups for muon: 4-D conv filters (HWIO) go to Muon, the airbench
  net's whitening bias to its own SGD, everything else to Nesterov SGD."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({
      k: "muon" if v.ndim == 4 else "whiten" if k == ("whiten_bias",) else "sgd"
      for k, v in flat.items()})


def rescale_filters() -> optax.GradientTransformation:
  """airbench94_muon rescales each filter tensor to Frobenius norm sqrt(out channels)
  just before its step (p *= sqrt(O) / |p|). optax.contrib.muon has no such projection
  and no optax transform rescales params, so it is written here: as an update it is
  (s - 1) p, added to the Muon step, so that p + update = s p - lr U."""

  def update(updates, state, params=None):
    def one(u, p):
      s = jnp.sqrt(jnp.float32(p.shape[-1])) / jnp.linalg.norm(p.reshape(-1))
      return u + (s - 1.0) * p
    return jax.tree.map(one, updates, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _muon(factor: optax.Schedule | None, momentum: float, bias_lr: float,
          whiten_steps: int) -> optax.GradientTransformation:
  """airbench94_muon's optimizer, one optax.multi_transform over three groups:
    muon    the conv filters: PyTorch-style Nesterov momentum 0.6 (optax.trace), then
            optax.contrib's Newton-Schulz orthogonalization (3 steps; its own momentum
            off, beta 0, since its bias-corrected EMA weighs the first steps otherwise),
            times muon_lr and the schedule; the filters rescaled first (rescale_filters).
            No decay. No width scaling: airbench's update is the plain orthogonal one.
    sgd     the rest (BatchNorm shifts at bias_lr x, the head): the decay added to the
            gradient, Nesterov SGD (momentum), times the schedule.
    whiten  the whitening bias: as sgd at bias_lr x, its lr falling linearly to 0 over
            whiten_steps, then frozen (0: as sgd).
  learning_rate, weight_decay and muon_lr are injected, one value per member."""
  scale = factor or (lambda count: jnp.float32(1.0))
  dims = lambda tree: jax.tree.map(
      lambda _: optax.contrib.MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3), tree)
  whiten_factor = (lambda count: jnp.clip(1.0 - count / whiten_steps, 0.0, 1.0)) if whiten_steps \
      else scale

  def rule(learning_rate, weight_decay, muon_lr):
    def sgd(schedule, mask_scale=None):
      return optax.chain(
          mask_scale or optax.identity(),
          optax.add_decayed_weights(weight_decay),
          optax.sgd(learning_rate, momentum=momentum, nesterov=True),
          optax.scale_by_schedule(schedule))

    biases = optax.masked(optax.scale(bias_lr), norm_bias_mask) if bias_lr != 1.0 else None
    return optax.multi_transform({
        "muon": optax.chain(
            optax.trace(decay=MUON_MOMENTUM, nesterov=True),
            optax.contrib.scale_by_muon(ns_steps=MUON_NS_STEPS, beta=0.0, eps=MUON_EPS,
                                        weight_dimension_numbers=dims),
            optax.scale_by_learning_rate(muon_lr), optax.scale_by_schedule(scale),
            rescale_filters()),
        "sgd": sgd(scale, biases),
        "whiten": sgd(whiten_factor, optax.scale(bias_lr)),
    }, muon_labels)

  return optax.inject_hyperparams(rule)(learning_rate=0.0, weight_decay=0.0, muon_lr=0.0)
