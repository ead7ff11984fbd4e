"""Small pure functions: group keys, config diffs, padded batches, seed aggregation, roles."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from dl101_jax.host import checkpoint, report
from dl101_jax.core import train
from dl101_jax.config import RUN, SCHEDULE, SHAPE, VALUE, Config, fields_with_role, group_key


def test_every_field_has_exactly_one_known_role():
  roles = {f.name: f.metadata.get("role") for f in dataclasses.fields(Config)}
  assert set(roles.values()) <= {VALUE, SHAPE, SCHEDULE, RUN}
  assert fields_with_role(VALUE) == ("dropout", "l2", "l1", "learning_rate", "weight_decay",
                                     "muon_lr", "seed")
  assert fields_with_role(SCHEDULE) == ("epochs",)


def test_group_key_joins_value_variants_and_splits_shape_variants():
  base = Config(dataset="digits")
  same = [base, base.replace(dropout=0.5, seed=3, learning_rate=0.1, l2=1e-3),
          base.replace(workdir="elsewhere", seeds=4, name="other")]
  assert len({group_key(c) for c in same}) == 1
  # adam and adamw share one program (adam is adamw with zero decay); sgd does not.
  assert group_key(base.replace(optimizer="adamw", weight_decay=0.1)) == group_key(base)
  for change in ({"optimizer": "sgd"}, {"batch_size": 50}, {"net": "conv8-pool-fc16"},
                 {"epochs": 3}, {"rotate": 0.0}):
    assert group_key(base.replace(**change)) != group_key(base), change


def test_config_diff_names_fields_and_fills_new_ones_with_defaults():
  a = Config(dataset="digits").to_dict()
  b = Config(dataset="digits", learning_rate=0.01, epochs=9, workdir="x").to_dict()
  assert checkpoint.config_diff([a], [b]) == ["learning_rate"]  # epochs and workdir may change
  assert checkpoint.config_diff([a], [a, a]) == ["variants/seeds (number of members)"]
  old = {k: v for k, v in a.items() if k != "init"}  # written before `init` existed
  assert checkpoint.config_diff([old], [a], Config().to_dict()) == []
  assert checkpoint.config_diff([old], [dict(a, init="lecun")], Config().to_dict()) == ["init"]


@pytest.mark.parametrize("n,bs", [(10, 3), (9, 3), (1, 4), (7, 7)])
def test_padded_batches_cover_each_example_once_and_mask_the_rest(n, bs):
  order = jnp.asarray(np.random.default_rng(n).permutation(n))
  idx, mask = train.padded_batches(order, bs)
  steps = -(-n // bs)
  assert idx.shape == mask.shape == (steps, bs)
  real = np.asarray(idx)[np.asarray(mask) == 1]
  assert sorted(real.tolist()) == list(range(n))  # every example exactly once
  assert np.asarray(mask).sum() == n and np.all(np.asarray(mask).ravel()[:n] == 1)


def test_over_seeds_counts_only_the_seeds_that_reached_an_epoch():
  h1 = {"epoch": [1, 2, 3], "val_accuracy": [0.1, 0.3, 0.5]}
  h2 = {"epoch": [1, 2], "val_accuracy": [0.3, 0.5]}  # diverged in epoch 3
  x, mu, sd = report.over_seeds([h1, h2], "val_accuracy")
  np.testing.assert_allclose(x, [1, 2, 3])
  np.testing.assert_allclose(mu, [0.2, 0.4, 0.5])
  np.testing.assert_allclose(sd, [0.1, 0.1, 0.0])
