"""Optax update rules, TFLearn's L2 loss term, and decoupled weight decay.

Two kinds of regularization, kept apart on purpose:
  * `l2_penalty`: TFLearn's regularizer='L2', a loss term l2 * sum(w**2) / 2,
    so it passes through Adam's normalization like any gradient;
  * AdamW's decoupled decay: params -= lr * wd * params, outside the gradient.
Both touch kernels only, never biases; TFLearn's L2 skipped the output layer too.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

LABELS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


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


def make_optimizer(name: str) -> optax.GradientTransformation:
  """An optax transform whose learning rate (and decay) live in its state.

  `optax.inject_hyperparams` puts them in `opt_state.hyperparams`, so members
  of a vmapped group can each carry their own; the values given here are
  placeholders that `init_opt_state` overwrites. adam is adamw with decay 0:
  the update is identical, and adam and adamw variants can share a program.
  """
  if name == "sgd":
    return optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)
  if name in ("adam", "adamw"):
    # Only the learning rate and decay are state; the mask is a function, not a schedule.
    return optax.inject_hyperparams(optax.adamw, static_args=("b1", "b2", "eps", "mask"))(
        learning_rate=0.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, mask=kernel_mask)
  raise ValueError(f"unknown optimizer {name!r}")


def init_opt_state(tx: optax.GradientTransformation, params: Any, *,
                   learning_rate: jax.Array, weight_decay: jax.Array) -> Any:
  """tx.init(params), with this member's learning rate and weight decay set."""
  state = tx.init(params)
  hp = dict(state.hyperparams)
  hp["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
  if "weight_decay" in hp:
    hp["weight_decay"] = jnp.asarray(weight_decay, jnp.float32)
  return state._replace(hyperparams=hp)
