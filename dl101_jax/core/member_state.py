"""One member's state: its pytree, its fresh init and its random keys.

A member is one model of a group (a seed of a variant). Its TrainState carries
everything that changes during training: the per-member hyperparameters, the weights
it evaluates and its kept best epoch included. So a group is these states stacked on
a leading axis (`init_states`), and one `select` prunes or reorders them, one gather
copies them (PBT's exploit), one checkpoint holds them; a vmapped step or a sharded
program needs no special case.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from dl101_jax.config import VALUE, fields_with_role
from dl101_jax.core.optim import init_opt_state

INIT, SHUFFLE, STEP, FLIP = 0, 1, 2, 3  # fold_in tags: independent streams per purpose


class TrainState(train_state.TrainState):
  """Flax's TrainState plus the per-member values a vmapped group may vary.

  A member's hyperparameters (its config's VALUE fields but the seed) have two homes: the
  ones the update rule takes (learning rate, weight decay, ...) in `opt_state.hyperparams`
  (optax.inject_hyperparams), the rest, which the step reads (dropout, l2, ...), in `hp`.
  `hparams` and `with_hparams` are the one place that knows which is where.
  `batch_stats`: BatchNorm's running means and variances ({} without BatchNorm),
  part of each member's state, so they vmap, checkpoint and resume with it.
  """

  hp: dict[str, jax.Array]
  batch_stats: Any = flax.struct.field(default_factory=dict)
  # The weights evaluation, the kept best epoch and export use, when not the params
  # ({} without either flag): with --ema, optax.ema's state (updated every step) and its
  # bias-corrected average (debiased, so a short run is not pulled toward the init);
  # with --lookahead, optax.lookahead's state and its slow weights.
  average_state: Any = flax.struct.field(default_factory=dict)
  eval_params: Any = flax.struct.field(default_factory=dict)
  # With --lookahead and BatchNorm: the running statistics averaged with the slow weights
  # (airbench94 averages its BatchNorm buffers too), which evaluation pairs with them.
  eval_batch_stats: Any = flax.struct.field(default_factory=dict)
  # The kept best epoch (`keep_best`): `model_variables` at the epoch of the highest
  # validation accuracy so far, that accuracy (-inf: none yet) and that epoch (0: none).
  best: Any = flax.struct.field(default_factory=dict)
  best_accuracy: jax.Array = flax.struct.field(default_factory=lambda: jnp.float32(-jnp.inf))
  best_epoch: jax.Array = flax.struct.field(default_factory=lambda: jnp.int32(0))


def model_variables(state: TrainState | dict) -> dict:
  """What apply_fn takes to evaluate: the params (their EMA, or Lookahead's slow weights,
  when kept), and BatchNorm's statistics (the averaged ones with them) when the net has
  them. Works on stacked states too, and on a state restored as a dict (export)."""
  get = state.get if isinstance(state, dict) else lambda k: getattr(state, k, None)
  out = {"params": get("eval_params") or get("params")}
  if get("batch_stats"):
    out["batch_stats"] = get("eval_batch_stats") or get("batch_stats")
  return out


@jax.jit
def keep_best(states: TrainState, val_accuracy_M: jax.Array, epoch: jax.Array) -> TrainState:
  """Stacked states after an epoch validated at `val_accuracy_M`: each member that beat its
  best so far keeps the weights it evaluates now as its best, with that accuracy and epoch.
  NaN never beats a best. On the device; only the M accuracies come from the host."""
  improved_M = val_accuracy_M > states.best_accuracy
  pick = lambda new, old: jnp.where(improved_M.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
  return states.replace(best=jax.tree.map(pick, model_variables(states), states.best),
                        best_accuracy=pick(val_accuracy_M.astype(jnp.float32),
                                           states.best_accuracy),
                        best_epoch=pick(jnp.broadcast_to(epoch, improved_M.shape).astype(
                            jnp.int32), states.best_epoch))


def hparams(states: TrainState, names: tuple[str, ...]) -> dict[str, jax.Array]:
  """The named hyperparameters' current values (arrays of M for stacked states)."""
  injected = states.opt_state.hyperparams
  return {k: injected[k] if k in injected else states.hp[k] for k in names}


def with_hparams(states: TrainState, values: dict[str, jax.Array]) -> TrainState:
  """The states with the named hyperparameters set to `values`, each in its home."""
  injected, step_read = dict(states.opt_state.hyperparams), dict(states.hp)
  for k, v in values.items():
    home = injected if k in injected else step_read
    if k not in home:
      raise KeyError(f"no hyperparameter {k!r} in the state")
    home[k] = jnp.asarray(v, home[k].dtype)
  return states.replace(opt_state=states.opt_state._replace(hyperparams=injected), hp=step_read)


def lookahead_step(state: TrainState, period: int, total_steps: int) -> TrainState:
  """airbench94's Lookahead, after the fast step: at every `period`-th step t of T the slow
  weights move toward the fast ones by 1 - 0.95**5 * (t/T)**3 and the fast restart from them.
  BatchNorm's running statistics are averaged and restarted alongside, as airbench does
  with its buffers, so the slow weights are evaluated with statistics that match them.

  optax.lookahead does the update; its step size is fixed when built, and airbench's rises
  with t, so it is built here per step. The rule's update is applied already (its optimizer
  state stays the params'), so lookahead sees a zero fast update.
  """
  t = state.step.astype(jnp.float32) / max(total_steps, 1)
  slow_step = 1.0 - 0.95 ** 5 * jnp.minimum(t, 1.0) ** 3
  tx = optax.lookahead(optax.identity(), period, slow_step)
  fast = {"params": state.params, "batch_stats": state.batch_stats}
  both = optax.LookaheadParams(
      fast=fast, slow={"params": state.eval_params, "batch_stats": state.eval_batch_stats})
  updates, la_state = tx.update(jax.tree.map(jnp.zeros_like, fast), state.average_state, both)
  both = optax.apply_updates(both, updates)
  return state.replace(params=both.fast["params"], batch_stats=both.fast["batch_stats"],
                       eval_params=both.slow["params"],
                       eval_batch_stats=both.slow["batch_stats"], average_state=la_state)


def init_state(model: Any, tx: optax.GradientTransformation, sample_x: jax.Array,
               hp: dict[str, jax.Array], ema: bool = False, lookahead: int = 0) -> TrainState:
  """One member's fresh state from its hyperparameters `hp` (its config's VALUE fields: seed,
  learning_rate, weight_decay, dropout, l2, ...): the seed makes its weights, the update
  rule's are set in its optimizer state, the rest are kept in `hp` for the step to read.
  With `ema`, the params' moving average starts at the params; with `lookahead` (its
  period), so do the slow weights. The kept best starts as the initial weights, with no
  epoch (0) and accuracy -inf, so the first validated epoch replaces it."""
  key = jax.random.fold_in(jax.random.PRNGKey(hp["seed"]), INIT)
  variables = model.init({"params": key}, sample_x, train=False)
  params = variables["params"]
  values = {k: v for k, v in hp.items() if k != "seed"}
  opt_state = init_opt_state(tx, params, **values)
  average_state = {}
  batch_stats = variables.get("batch_stats", {})
  if ema:
    average_state = optax.ema(0.0).init(params)
  elif lookahead:
    average_state = optax.lookahead(optax.identity(), lookahead, 0.0).init(
        optax.LookaheadParams.init_synced({"params": params, "batch_stats": batch_stats}))
  state = TrainState(step=jnp.zeros((), jnp.int32), apply_fn=model.apply, params=params,
                     tx=tx, opt_state=opt_state,
                     hp={k: jnp.asarray(v, jnp.float32) for k, v in values.items()
                         if k not in opt_state.hyperparams},
                     batch_stats=batch_stats,
                     average_state=average_state, eval_params=params if ema or lookahead else {},
                     eval_batch_stats=batch_stats if lookahead else {})
  return state.replace(best=model_variables(state))


def hparams_of(configs: list[Any]) -> dict[str, jax.Array]:
  """The members' hyperparameters as `init_states` takes them: one array over the configs
  per VALUE field (the seed int32, the rest float32)."""
  return {k: jnp.asarray([getattr(c, k) for c in configs],
                         jnp.int32 if k == "seed" else jnp.float32)
          for k in fields_with_role(VALUE)}


def init_states(model: Any, tx: optax.GradientTransformation, sample_x: jax.Array,
                hp_M: dict[str, jax.Array], out_sharding: Any = None,
                ema: bool = False, lookahead: int = 0) -> TrainState:
  """M members' states stacked on a leading axis, built on the device in one program."""
  fn = jax.vmap(lambda hp: init_state(model, tx, sample_x, hp, ema, lookahead))
  return jax.jit(fn, out_shardings=out_sharding)(hp_M)


def member_keys(seeds: list[int]) -> jax.Array:
  return jnp.stack([jax.random.PRNGKey(s) for s in seeds])
