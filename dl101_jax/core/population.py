"""Hyperparameter search on the device: sample a population, halve it, exploit and explore.

A population is a group's member states stacked on a leading axis M (the same
stacked `TrainState` that `train.run_epochs` trains). Its hyperparameters are
values in that state, not program constants (`member_state.hparams`). So PBT's
exploit is a gather over the member axis and its explore a rewrite of those
leaves, both in one jitted call with no host copy of a state; successive halving
is `group.select` of the survivors.

No library does this: Ray Tune, Optuna and KerasTuner schedule each trial as its
own process or actor, so their exploit copies checkpoints between processes.
Randomness comes from keys folded from (search seed, purpose, epoch): a search is
a pure function of its config, and a resumed one repeats the same decisions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax.core.member_state import hparams, with_hparams

HPARAMS = ("learning_rate", "dropout", "weight_decay", "l2")
LOG_UNIFORM = ("learning_rate",)  # sampled uniformly in log space; the rest uniformly
SAMPLE, EXPLORE = 10, 11  # fold_in tags (train.py uses 0-2 for a member's own streams)
PERTURB = (0.8, 1.2)  # explore's factors, as in the PBT paper and Ray Tune


@dataclasses.dataclass(frozen=True)
class Space:
  """Closed bounds (lo, hi) per hyperparameter; lo == hi fixes it."""

  learning_rate: tuple[float, float] = (1e-4, 1e-2)
  dropout: tuple[float, float] = (0.0, 0.7)
  weight_decay: tuple[float, float] = (0.0, 0.1)
  l2: tuple[float, float] = (0.0, 0.002)

  def bounds(self, name: str) -> tuple[jax.Array, jax.Array]:
    lo, hi = getattr(self, name)
    return jnp.float32(lo), jnp.float32(hi)

  def to_dict(self) -> dict[str, list[float]]:
    return {k: list(getattr(self, k)) for k in HPARAMS}


def sample(key: jax.Array, space: Space, n: int) -> dict[str, jax.Array]:
  """n configurations from the space's prior: one float32 array of n per hyperparameter."""
  out = {}
  for i, name in enumerate(HPARAMS):
    u_N = jax.random.uniform(jax.random.fold_in(key, i), (n,), jnp.float32)
    out[name] = _from_unit(u_N, name, space)
  return out


def _from_unit(u: jax.Array, name: str, space: Space) -> jax.Array:
  lo, hi = space.bounds(name)
  if name in LOG_UNIFORM:
    v = jnp.exp(jnp.log(lo) + u * (jnp.log(hi) - jnp.log(lo)))
  else:
    v = lo + u * (hi - lo)
  return jnp.clip(v, lo, hi)  # float32 rounding must not step outside the bounds


def get_hparams(states: Any) -> dict[str, jax.Array]:
  """Each member's current searched hyperparameters (arrays of M) from the stacked states."""
  return hparams(states, HPARAMS)


def set_hparams(states: Any, hp_M: dict[str, jax.Array]) -> Any:
  """The states with each member's searched hyperparameters replaced by `hp_M`'s."""
  return with_hparams(states, {k: hp_M[k] for k in HPARAMS})


def explore(key: jax.Array, hp_M: dict[str, jax.Array], space: Space,
            resample_probability: float) -> dict[str, jax.Array]:
  """Per member and hyperparameter: resample from the prior with `resample_probability`,
  else multiply by 0.8 or 1.2 (even odds); the result is clipped to the bounds."""
  out = {}
  for i, name in enumerate(HPARAMS):
    k_re, k_u, k_up = jax.random.split(jax.random.fold_in(key, i), 3)
    v_M = hp_M[name]
    lo, hi = space.bounds(name)
    fresh_M = _from_unit(jax.random.uniform(k_u, v_M.shape, jnp.float32), name, space)
    factor_M = jnp.where(jax.random.bernoulli(k_up, 0.5, v_M.shape), PERTURB[1], PERTURB[0])
    resample_M = jax.random.bernoulli(k_re, resample_probability, v_M.shape)
    out[name] = jnp.clip(jnp.where(resample_M, fresh_M, v_M * factor_M), lo, hi)
  return out


def exploit_explore(key: jax.Array, states: Any, score_M: jax.Array, *, space: Space,
                    fraction: float, resample_probability: float) -> tuple[Any, jax.Array, dict]:
  """One PBT step over M members (jit with space, fraction and resample_probability static).

  The bottom ⌊M·fraction⌋ by `score_M` (at least 1 when M >= 2) copy the whole state
  (params, optimizer moments, step, hyperparameters) of a member drawn uniformly
  from the top as many, then explore their hyperparameters. Ties rank the lower
  index higher. Returns (states, source_M: whom each member copied, itself when it
  did not, hyperparameters_M after the step).
  """
  m = score_M.shape[0]
  q = quantile_size(m, fraction)
  order_M = jnp.argsort(-score_M, stable=True)  # best first; stable: ties by index
  top_Q, bottom_Q = order_M[:q], order_M[m - q:]
  k_src, k_exp = jax.random.split(key)
  donors_Q = top_Q[jax.random.randint(k_src, (q,), 0, q)]
  source_M = jnp.arange(m).at[bottom_Q].set(donors_Q)
  states = jax.tree.map(lambda a: a[source_M], states)  # exploit: a gather on the device
  hp_M = get_hparams(states)
  explored = explore(k_exp, hp_M, space, resample_probability)
  copied_M = source_M != jnp.arange(m)
  hp_M = {k: jnp.where(copied_M, explored[k], v) for k, v in hp_M.items()}
  return set_hparams(states, hp_M), source_M, hp_M


def quantile_size(m: int, fraction: float) -> int:
  """How many members PBT replaces (and how many it draws donors from)."""
  if m < 2:
    return 0
  return min(m // 2, max(1, int(m * fraction)))


@functools.partial(jax.jit, static_argnames=("space", "fraction", "resample_probability"))
def pbt_step(key, states, score_M, *, space, fraction, resample_probability):
  return exploit_explore(key, states, score_M, space=space, fraction=fraction,
                         resample_probability=resample_probability)


def halving_keep(score_M: np.ndarray, eta: int) -> list[int]:
  """Successive halving's rung: positions of the top ⌈M/η⌉ scores, in their original order.

  Ties rank the lower position higher, so a rung is a pure function of the scores.
  """
  m = len(score_M)
  k = math.ceil(m / eta)
  order = sorted(range(m), key=lambda j: (-float(score_M[j]), j))
  return sorted(order[:k])


def key_for(seed: int, tag: int, epoch: int = 0) -> jax.Array:
  """The search's key for one purpose at one epoch: decisions repeat exactly on resume."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), tag), epoch)
