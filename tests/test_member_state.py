"""A fresh member state: where `init_state` puts each hyperparameter, what the kept best
starts as, and what `with_hparams` refuses. Init only, no training: about a second."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl101_jax.config import VALUE, Config, fields_with_role
from dl101_jax.core import member_state
from dl101_jax.core.models import ConvNet
from dl101_jax.core.optim import make_optimizer


@pytest.fixture(scope="module")
def state():
  model = ConvNet(layer_sets=((4,),), fc=(8,), num_classes=3, im2col=True)
  hp = {k: v[0] for k, v in member_state.hparams_of([Config(dropout=0.5)]).items()}
  return member_state.init_state(model, make_optimizer("sgd"), jnp.zeros((1, 6, 6, 1)), hp)


def test_the_kept_best_starts_as_the_initial_weights_with_no_epoch_and_no_accuracy(state):
  # Epoch 0 and -inf: the first validated epoch, whatever its accuracy, replaces it.
  assert int(state.best_epoch) == 0 and float(state.best_accuracy) == -np.inf
  want = member_state.model_variables(state)
  assert jax.tree.structure(state.best) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(state.best), jax.tree.leaves(want), strict=True):
    np.testing.assert_array_equal(a, b)


def test_each_hyperparameter_has_one_home_and_the_seed_none(state):
  injected = set(state.opt_state.hyperparams)
  values = set(fields_with_role(VALUE)) - {"seed"}
  assert "learning_rate" in injected  # sgd takes it; TFLearn-style L2 (`l2`) is the step's
  assert set(state.hp) == values - injected  # the rest: read by the step, as float32
  assert all(v.dtype == jnp.float32 for v in state.hp.values())
  assert float(state.hp["dropout"]) == 0.5
  got = member_state.hparams(state, tuple(sorted(values)))
  assert float(got["dropout"]) == 0.5
  assert got["learning_rate"] == np.float32(Config().learning_rate)


def test_with_hparams_sets_each_in_its_home_and_refuses_a_name_it_does_not_hold(state):
  s = member_state.with_hparams(state, {"learning_rate": 0.25, "dropout": 0.125})
  assert float(s.opt_state.hyperparams["learning_rate"]) == 0.25
  assert float(s.hp["dropout"]) == 0.125 and s.hp["dropout"].dtype == jnp.float32
  with pytest.raises(KeyError) as refused:
    member_state.with_hparams(state, {"nope": 1.0})
  assert refused.value.args == ("no hyperparameter 'nope' in the state",)
