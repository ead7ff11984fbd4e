"""A search's host side: the population step `fit` runs between chunks, and its record.

`PopulationStep` is a `fit(between_chunks=...)` hook (and `ReplayStep`, which replays a
PBT winner's schedule, another). After each chunk it records
the hyperparameters every member trained with; on a decision epoch it
  * halving: keeps the top ⌈M/η⌉ members by validation accuracy and drops the
    rest from the program (the next chunk compiles for fewer members);
  * pbt: runs `population.pbt_step` on the device (exploit + explore) and
    records who copied whom;
  * grid: nothing (every member trains to the end).
The record lives in `Progress.population`, which is checkpoint metadata: a
resumed search carries its history and repeats the same decisions (their keys
come from the search seed and the epoch, so no sampler state is needed).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax.core import population as pop
from dl101_jax.host.group import Progress
from dl101_jax.host.placement import members_axis, select, stay, width
from dl101_jax.host.parallel import to_host

Method = Literal["grid", "halving", "pbt"]  # --method's type; its choices, once
METHODS = typing.get_args(Method)


@dataclasses.dataclass(frozen=True)
class PopulationStep:
  method: str
  space: pop.Space
  seed: int  # the search's seed: its sampler and explore keys
  epochs: int
  initial: tuple[dict, ...]  # each member's sampled hyperparameters
  eta: int = 2
  rung_epochs: int = 2
  pbt_every: int = 2
  fraction: float = 0.25
  resample_probability: float = 0.25

  @property
  def every(self) -> int:
    """Epochs between decisions (0: none)."""
    return {"grid": 0, "halving": self.rung_epochs, "pbt": self.pbt_every}[self.method]

  def fresh_record(self) -> dict:
    m = len(self.initial)
    return {"current": [dict(h) for h in self.initial],
            "hparams": [{"epoch": [], **{k: [] for k in pop.HPARAMS}} for _ in range(m)],
            "lineage": [[] for _ in range(m)], "stopped": [None] * m, "rungs": []}

  def __call__(self, states: Any, progress: Progress) -> Any:
    rec = progress.population = progress.population or self.fresh_record()
    record_hparams(rec, progress)
    e = progress.epoch
    if not self.every or e % self.every or e >= self.epochs or len(progress.alive) < 2:
      return states
    alive = list(progress.alive)
    score_M = np.asarray([progress.histories[i]["val_accuracy"][-1] for i in alive])
    if self.method == "halving":
      keep = pop.halving_keep(score_M, self.eta)
      for j, i in enumerate(alive):
        if j not in keep:
          rec["stopped"][i] = e
      progress.alive = [alive[j] for j in keep]
      rec["rungs"].append({"epoch": e, "members": alive, "val_accuracy": score_M.tolist(),
                           "kept": progress.alive})
      return select(states, keep)
    key = pop.key_for(self.seed, pop.EXPLORE, e)
    states, source_M, hp_M = _pbt_placed(
        key, states, jnp.asarray(score_M, jnp.float32), space=self.space,
        fraction=self.fraction, resample_probability=self.resample_probability,
        sharding=members_axis(states)[0])
    source_M, hp_M = to_host((source_M, hp_M))
    for j, i in enumerate(alive):
      if source_M[j] != j:
        rec["lineage"][i].append({"epoch": e, "copied": alive[int(source_M[j])],
                                  "val_accuracy": float(score_M[j]),
                                  "donor_val_accuracy": float(score_M[source_M[j]])})
        rec["current"][i] = {k: float(hp_M[k][j]) for k in pop.HPARAMS}
    return states


@dataclasses.dataclass(frozen=True)
class ReplayStep:
  """A `fit(between_chunks=...)` hook for `experiments.search --replay`: after epoch e it
  sets every member's hyperparameters to those `schedule` gives epoch e + 1 (a PBT winner's
  schedule, traced through the weights it inherited: `ancestry`), and records what the
  states trained epoch e with, read back from the device. The record is checkpoint
  metadata (`Progress.population`), so a resumed replay keeps it."""

  schedule: tuple[dict, ...]  # epochs 1..E: {"epoch": e, <pop.HPARAMS>}

  def __call__(self, states: Any, progress: Progress) -> Any:
    rec = progress.population = progress.population or {"used": []}
    used = to_host(pop.get_hparams(states))
    e = progress.epoch
    if not rec["used"] or rec["used"][-1]["epoch"] < e:
      rec["used"].append({"epoch": e, **{k: float(np.asarray(used[k])[0])
                                         for k in pop.HPARAMS}})
    if e >= len(self.schedule):
      return states
    nxt = self.schedule[e]
    # Every row, the padding's too (placement.py), takes the same values.
    return _set_placed(states, {k: jnp.full((width(states),), nxt[k], jnp.float32)
                                for k in pop.HPARAMS}, sharding=members_axis(states)[0])


@functools.partial(jax.jit, static_argnames="sharding")
def _set_placed(states, hp_M, *, sharding):
  """`pop.set_hparams`, jitted, the states kept where they were (`sharding`; None: where XLA
  puts them): the next chunk's program was compiled for that placement."""
  return stay(pop.set_hparams(states, hp_M), sharding)


@functools.partial(jax.jit, static_argnames=("space", "fraction", "resample_probability",
                                             "sharding"))
def _pbt_placed(key, states, score_M, *, space, fraction, resample_probability, sharding):
  """`pop.pbt_step` among the first M = len(score_M) members of states that may be padded to
  W rows and split over 'members' (placement.py): the step sees exactly the M members (the
  same draws as on one device), the padding is refilled from the new last member, and the
  states come back where they were (`sharding`; None: where XLA puts them). One program:
  the exploit's copies cross devices inside it."""
  m, w = score_M.shape[0], width(states)
  states, source_M, hp_M = pop.pbt_step(
      key, jax.tree.map(lambda a: a[:m], states), score_M, space=space, fraction=fraction,
      resample_probability=resample_probability)
  states = jax.tree.map(lambda a: a[jnp.minimum(jnp.arange(w), m - 1)], states)
  return stay(states, sharding), source_M, hp_M


def record_hparams(rec: dict, progress: Progress) -> None:
  """Append, for every epoch a member trained since the last call, the values it used."""
  for i, h in enumerate(progress.histories):
    done = rec["hparams"][i]["epoch"]
    for ep in h["epoch"]:
      if not done or ep > done[-1]:
        done.append(ep)
        for k in pop.HPARAMS:
          rec["hparams"][i][k].append(rec["current"][i][k])


def ancestry(rec: dict, member: int, last_epoch: int) -> list[dict]:
  """Whose hyperparameters trained `member`'s weights at each epoch 1..last_epoch.

  PBT copies weights: a member that copied donor d at epoch e owes epochs <= e to
  d's line. Returns one {"epoch", "member", <hyperparameters>} per epoch.
  """
  out, m, upto = [], member, last_epoch
  while upto > 0:
    copies = [ev["epoch"] for ev in rec["lineage"][m] if ev["epoch"] < upto]
    since = max(copies, default=0)
    hp = rec["hparams"][m]
    for ep in range(upto, since, -1):
      j = hp["epoch"].index(ep)
      out.append({"epoch": ep, "member": m, **{k: hp[k][j] for k in pop.HPARAMS}})
    if not copies:
      break
    m = next(ev["copied"] for ev in rec["lineage"][m] if ev["epoch"] == since)
    upto = since
  return out[::-1]


def member_epochs(progress: Progress) -> int:
  """The compute a search spent: epochs trained, summed over members."""
  return sum(len(h["epoch"]) + (d is not None) for h, d in zip(progress.histories,
                                                                progress.diverged))


def winner(progress: Progress) -> int:
  """The member with the best final validation accuracy among those still alive
  (ties: the lower index); every decision and this choice use validation data only."""
  return max(progress.alive, key=lambda i: (progress.histories[i]["val_accuracy"][-1], -i))
