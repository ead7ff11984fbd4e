"""The kept-best model and the normalizer, checked against the run's own history.

One short run on digits (two members in one program, ~10 s) whose weights are recorded
after every epoch and wiped after epoch 2, so its last epoch is its worst: the kept
"best" must then be an earlier epoch's weights, exactly, and so must `export --best`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl101_jax import export, predict
from dl101_jax.core import member_state
from dl101_jax.host import data as data_lib
from dl101_jax.host.experiment import run_experiment
from experiments import dropout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  wd = tmp_path_factory.mktemp("kept_best")
  seen = {}

  def record_then_wipe(states, progress):
    seen[progress.epoch] = jax.device_get(member_state.model_variables(states))
    if progress.epoch == 2:  # zero weights learn nothing more (ReLU's gradient at 0 is 0)
      states = states.replace(params=jax.tree.map(lambda a: a * 0, states.params))
    return states

  config = dropout.CONFIG.replace(dataset="digits", epochs=3, train_size=300,
                                  workdir=str(wd))
  results = run_experiment(config, dropout.VARIANTS, plot=False,
                           between_chunks=record_then_wipe, decide_every=1)
  return wd, config, results, seen


def test_best_epoch_weights_are_that_epochs_weights_and_export_best_writes_them(run, tmp_path):
  wd, _, results, seen = run
  (group,) = results.groups
  assert sorted(seen) == [1, 2, 3]
  for j, (m, h) in enumerate(zip(group.members, group.progress.histories)):
    name = m.variant
    best = int(group.states.best_epoch[j])
    assert float(group.states.best_accuracy[j]) == max(h["val_accuracy"])
    assert best == h["epoch"][int(np.argmax(h["val_accuracy"]))] and best in (1, 2), h
    want = jax.tree.map(lambda a: a[j], seen[best]["params"])
    out = export.export(export.ExportConfig(workdir=str(wd), variant=name, best=True,
                                            out=str(tmp_path / name)))
    model = predict.load(out)
    assert model.spec["epoch"] == best
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(model.variables["params"]),
                    strict=True):
      np.testing.assert_array_equal(np.asarray(b), a)  # bit for bit
    last = jax.tree.map(lambda a: a[j], seen[3]["params"])
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(last),
                                                        jax.tree.leaves(want)))


def test_normalizer_statistics_are_the_training_splits(run):
  _, config, results, _ = run
  ds = data_lib.load(config)
  x = ds.x_train.astype(np.float64)
  np.testing.assert_allclose(np.asarray(results.data.mean), x.mean(), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(results.data.std), x.std(), rtol=1e-6)
  assert abs(ds.x_val.astype(np.float64).mean() - x.mean()) > 1e-3  # the splits differ


def test_keep_best_keeps_exactly_the_members_that_beat_their_best():
  # Three members: one improves, one ties (a tie is not a new best), one validates NaN.
  params = {"w": jnp.arange(6, dtype=jnp.float32).reshape(3, 2)}
  states = member_state.TrainState(
      step=jnp.zeros(3, jnp.int32), apply_fn=None, params=params, tx=None, opt_state={},
      hp={}, best={"params": {"w": -jnp.ones((3, 2))}},
      best_accuracy=jnp.asarray([0.5, 0.6, 0.7]), best_epoch=jnp.asarray([1, 2, 3], jnp.int32))
  out = member_state.keep_best(states, jnp.asarray([0.55, 0.6, jnp.nan]), jnp.int32(4))
  np.testing.assert_array_equal(out.best["params"]["w"], [[0, 1], [-1, -1], [-1, -1]])
  np.testing.assert_array_equal(out.best_accuracy, np.float32([0.55, 0.6, 0.7]))
  np.testing.assert_array_equal(out.best_epoch, [4, 2, 3])
  np.testing.assert_array_equal(out.params["w"], params["w"])  # the weights themselves untouched
