"""The compiled program around the step: what each epoch feeds the model, the epochs and
members of `run_epochs`, evaluation's outputs, progress ticks and donation.

A *probe* sees the inputs: a bias-free linear model with zero weights, trained one SGD step
on the squared error against targets 1 with learning rate 1/2, ends with weights equal to
the mean of its batch's inputs (d/dW mean_b (x_b.W - 1)^2 = -2 mean_b x_b at W = 0). With
one batch per epoch, an epoch's weights are the mean of everything it fed the model.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dl101_jax.core import losses, member_state, train
from dl101_jax.core.augment import augment
from dl101_jax.core.member_state import SHUFFLE, STEP
from dl101_jax.core.optim import make_optimizer

N, H, W, C = 6, 4, 5, 2  # N != H != W: an axis mixed up changes a shape or a value


class Probe(nn.Module):
  outputs: int = 1

  @nn.compact
  def __call__(self, x, train=False, dropout_rate=0.0):
    return nn.Dense(self.outputs, use_bias=False, kernel_init=nn.initializers.zeros,
                    name="head")(x.reshape(x.shape[0], -1))


class Linear(nn.Module):
  """Three classes from random weights: evaluation's outputs."""

  @nn.compact
  def __call__(self, x, train=False, dropout_rate=0.0):
    return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


def _hp(seed=0, lr=0.5):
  return {"seed": jnp.int32(seed), "learning_rate": jnp.float32(lr),
          "weight_decay": jnp.float32(0.0), "dropout": jnp.float32(0.0), "l2": jnp.float32(0.0),
          "l1": jnp.float32(0.0)}


def _data(n=N, targets="ones", seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (n, H, W, C)).astype(np.uint8)
  y = (np.ones((n, 1), np.float32) if targets == "ones"
       else rng.integers(0, 3, n).astype(np.int32))
  mean = x.reshape(-1, C).mean(0).astype(np.float32)
  std = x.reshape(-1, C).std(0).astype(np.float32)
  return train.DeviceData(jnp.asarray(x), jnp.asarray(y), jnp.asarray(x[:5]), jnp.asarray(y[:5]),
                          jnp.asarray(mean), jnp.asarray(std))


def _probe_state(seed=0):
  return member_state.init_state(Probe(), make_optimizer("sgd"), jnp.zeros((1, H, W, C)),
                                 _hp(seed))


def fed(prog, data, key, epoch=0):
  """The mean of the inputs one epoch fed the model (H x W x C), read off the probe."""
  state, _ = jax.jit(train.train_epoch, static_argnums=0)(
      prog, _probe_state(), key, jnp.int32(epoch), data)
  return np.asarray(state.params["head"]["kernel"]).reshape(H, W, C)


def _step_key(key, epoch=0):
  """The first step's augmentation key and the epoch's order, derived as the engine promises:
  the shuffle from (seed, SHUFFLE, epoch), a step's draws from (seed, STEP, step)."""
  order = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, SHUFFLE), epoch), N)
  k_aug, _ = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, STEP), 0))
  return k_aug, order


PROG = train.Program(loss="mse", batch_size=N, eval_batch_size=N)
KEY = jax.random.PRNGKey(3)


# --- What an epoch feeds the model ---------------------------------------------------------

@pytest.mark.parametrize("aug", [dict(rotate=0.5), dict(rotate=25.0), dict(translate=1),
                                 dict(rotate=25.0, flip=True)])
def test_tflearns_order_augments_raw_pixels_then_normalizes(aug):
  # Rotation fills the corners with pixel 0 (black), which normalization maps to -mean/std;
  # rotating normalized inputs would fill them with 0, the mean colour.
  data = _data()
  k_aug, order = _step_key(KEY)
  raw = data.x_train[order].astype(jnp.float32)
  kw = dict(flip=aug.get("flip", False), max_degrees=aug.get("rotate", 0.0),
            max_shift=aug.get("translate", 0))
  expect = np.asarray(data.normalize(augment(k_aug, raw, **kw))).mean(0)
  got = fed(dataclasses.replace(PROG, **aug), data, KEY)
  np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
  if "rotate" in aug:
    other = np.asarray(augment(k_aug, data.normalize(raw), **kw)).mean(0)
    assert np.abs(other - expect).max() > 1e-3  # the order is visible: the test can fail
  plain = np.asarray(data.normalize(raw)).mean(0)
  assert np.abs(plain - expect).max() > 1e-4  # and so is the augmentation itself


def test_airbenchs_order_normalizes_then_rotates_into_the_mean_colour():
  data = _data()
  k_aug, order = _step_key(KEY)
  x = data.normalize(data.x_train[order])
  expect = np.asarray(augment(k_aug, x, flip=False, max_degrees=25.0)).mean(0)
  got = fed(dataclasses.replace(PROG, rotate=25.0, augment_first=False), data, KEY)
  np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)


def test_without_augmentation_the_inputs_are_exactly_the_normalized_pixels():
  data = _data()
  x = np.asarray(data.x_train, np.float32)
  expect = ((x - np.asarray(data.mean)) / np.asarray(data.std)).mean(0)
  np.testing.assert_allclose(fed(PROG, data, KEY), expect, rtol=1e-5, atol=1e-6)
  k = jax.random.PRNGKey(0)
  for augment_first in (True, False):  # nothing to augment: the order cannot matter
    got = train.training_inputs(k, data.x_train, flip=False, rotate=0.0, translate=0,
                                normalize=data.normalize if augment_first else None)
    want = data.normalize(data.x_train) if augment_first else data.x_train
    assert np.array_equal(np.asarray(got), np.asarray(want, np.float32))


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_alternating_flips_mirror_exactly_the_images_the_epoch_says(epoch):
  data = _data()
  flip_N = np.asarray(train.alternating_flips(KEY, N, jnp.int32(epoch)))
  assert flip_N.shape == (N,) and 0 < flip_N.sum() < N
  x = np.asarray(data.normalize(data.x_train))
  expect = np.where(flip_N[:, None, None, None], x[:, :, ::-1], x).mean(0)
  got = fed(dataclasses.replace(PROG, flip=True, alternate_flip=True), data, KEY, epoch)
  np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
  # alternate_flip without flip flips nothing
  unflipped = fed(dataclasses.replace(PROG, alternate_flip=True), data, KEY, epoch)
  np.testing.assert_allclose(unflipped, x.mean(0), rtol=1e-5, atol=1e-6)


def test_alternating_flips_switch_every_epoch_and_repeat_every_two():
  f = [np.asarray(train.alternating_flips(KEY, 64, jnp.int32(e))) for e in range(4)]
  # airbench's: epoch 0 flips the run's own random half; odd epochs mirror all of them.
  own = jax.random.bernoulli(jax.random.fold_in(KEY, member_state.FLIP), 0.5, (64,))
  assert np.array_equal(f[0], np.asarray(own))
  assert np.array_equal(f[0], ~f[1]) and np.array_equal(f[0], f[2])
  assert np.array_equal(f[1], f[3])
  assert 16 < f[0].sum() < 48  # a random half, not all or none


def test_normalize_aligns_per_channel_or_scalar_statistics_with_the_last_axis():
  data = _data()
  x = np.asarray(data.x_train, np.float32)
  got = np.asarray(data.normalize(data.x_train))
  assert got.shape == x.shape
  np.testing.assert_allclose(got, (x - np.asarray(data.mean)) / np.asarray(data.std), rtol=1e-6)
  scalar = data.replace(mean=jnp.float32(100.0), std=jnp.float32(50.0))
  assert np.asarray(scalar.normalize(data.x_train[0])).shape == (H, W, C)
  np.testing.assert_allclose(scalar.normalize(data.x_train), (x - 100) / 50, rtol=1e-6)


# --- Losses and accuracy -------------------------------------------------------------------

def test_mse_is_the_per_example_mean_square_and_ignores_label_smoothing():
  rng = np.random.default_rng(0)
  out, y = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
  want = ((out - y) ** 2).mean(-1)
  for smoothing in (0.0, 0.2):
    got = losses.per_example_loss("mse", jnp.asarray(out), jnp.asarray(y), smoothing)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_cross_entropy_with_smoothing_is_against_smoothed_one_hot_targets():
  rng = np.random.default_rng(1)
  out = rng.normal(size=(5, 4)).astype(np.float32)
  y = np.array([0, 1, 2, 3, 1])
  logp = out - np.log(np.exp(out).sum(-1, keepdims=True))
  for a in (0.0, 0.2):
    targets = np.eye(4)[y] * (1 - a) + a / 4
    got = losses.per_example_loss("xent", jnp.asarray(out), jnp.asarray(y), a)
    np.testing.assert_allclose(got, -(targets * logp).sum(-1), rtol=1e-5)


def test_one_sigmoid_output_is_right_when_it_falls_on_the_labels_side_of_one_half():
  out = jnp.asarray([[0.2], [0.5], [0.7], [1.7], [0.9], [0.4]])
  y = jnp.asarray([[0.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
  assert np.asarray(losses.per_example_correct(out, y)).tolist() == [1, 1, 1, 1, 0, 0]


def test_two_or_more_outputs_are_right_when_the_argmax_is_the_label():
  out = jnp.asarray([[0.6, 0.9], [0.9, 0.6], [0.2, 0.1]])
  y = jnp.asarray([1, 1, 0])
  assert np.asarray(losses.per_example_correct(out, y)).tolist() == [1, 0, 1]
  out3 = jnp.asarray([[0.1, 0.7, 0.2], [3.0, 1.0, 2.0]])
  assert np.asarray(losses.per_example_correct(out3, jnp.asarray([1, 2]))).tolist() == [1, 0]


def test_a_batch_with_one_real_example_reports_that_examples_loss():
  rng = np.random.default_rng(2)
  out = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)
  per = losses.per_example_loss("xent", out, jnp.asarray([2, 0, 1]))
  got = losses.masked_mean(per, jnp.asarray([0.0, 1.0, 0.0]))
  np.testing.assert_allclose(got, per[1], rtol=1e-6)


# --- Evaluation ----------------------------------------------------------------------------

def _linear(data):
  model = Linear()
  return model, model.init(jax.random.PRNGKey(0), jnp.zeros((1, H, W, C)))


@pytest.mark.parametrize("n, bs", [(5, 2), (5, 5), (1, 4)])
def test_evaluation_is_the_mean_over_exactly_the_n_examples_and_predicts_each(n, bs):
  data = _data(targets="classes")
  data = data.replace(x_val=data.x_train[:n], y_val=data.y_train[:n])
  model, variables = _linear(data)
  prog = train.Program(loss="xent", batch_size=2, eval_batch_size=bs)
  logits = np.asarray(model.apply(variables, data.normalize(data.x_val)))
  y = np.asarray(data.y_val)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  plain = train.evaluate(prog, model.apply, variables, data)
  assert set(plain) == {"loss", "accuracy"}
  np.testing.assert_allclose(plain["loss"], -logp[np.arange(n), y].mean(), rtol=1e-5)
  np.testing.assert_allclose(plain["accuracy"], (logits.argmax(-1) == y).mean(), rtol=1e-6)
  out = train.evaluate(prog, model.apply, variables, data, predictions=True)
  assert set(out) == {"loss", "accuracy", "pred"} and out["pred"].dtype == jnp.int32
  assert np.asarray(out["pred"]).tolist() == logits.argmax(-1).tolist()


def test_eval_step_reads_the_mask_and_names_its_outputs():
  data = _data(targets="classes")
  model, variables = _linear(data)
  step = train.make_eval_step(model.apply, "xent")
  x = data.normalize(data.x_train[:4])
  logits = np.asarray(model.apply(variables, x))
  y = jnp.asarray([0, 1, 2, 0])
  m = step(variables, {"x": x, "y": y, "mask": jnp.asarray([1.0, 1.0, 0.0, 0.0])})
  assert set(m) == {"loss", "accuracy", "count", "pred"} and float(m["count"]) == 2
  np.testing.assert_allclose(m["accuracy"], (logits.argmax(-1)[:2] == [0, 1]).mean())
  assert np.asarray(m["pred"]).tolist() == logits.argmax(-1).tolist()


def test_sharded_batches_give_the_same_training_and_evaluation():
  data = _data(targets="classes")
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  sharded = NamedSharding(mesh, PartitionSpec("data"))
  prog = train.Program(loss="xent", batch_size=3, eval_batch_size=2)
  model, variables = _linear(data)
  a, b = (train.evaluate(p, model.apply, variables, data)
          for p in (prog, dataclasses.replace(prog, batch_sharding=sharded)))
  np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
  state = member_state.init_state(model, make_optimizer("sgd"), jnp.zeros((1, H, W, C)), _hp())
  s1, _ = train.train_epoch(prog, state, KEY, jnp.int32(0), data)
  s2, _ = train.train_epoch(dataclasses.replace(prog, batch_sharding=sharded), state, KEY,
                            jnp.int32(0), data)
  for u, v in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(u, v, rtol=1e-6)


# --- Epochs, members, progress, donation ---------------------------------------------------

def _states(seeds):
  model = Linear()
  hp = {k: jnp.stack([v for v in vs]) for k, vs in zip(
      _hp(), zip(*[_hp(s, lr=0.05).values() for s in seeds]))}
  return member_state.init_states(model, make_optimizer("sgd"), jnp.zeros((1, H, W, C)), hp)


# (3, 7), not (0, 1): PRNGKey(0), PRNGKey(1) stack to a symmetric 2x2 array, which hides a
# member axis read as the key's other axis.
@pytest.mark.parametrize("seeds", [(0,), (3, 7)])
def test_run_epochs_is_its_epochs_one_after_another_for_each_member(seeds):
  data = _data(n=8, targets="classes")
  prog = train.Program(loss="xent", batch_size=3, eval_batch_size=4)
  keys = member_state.member_keys(list(seeds))
  states, m = jax.jit(train.run_epochs, static_argnums=(0, 5))(
      prog, _states(seeds), keys, jnp.int32(3), data, 2)
  assert set(m) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
  assert all(v.shape == (2, len(seeds)) for v in m.values())
  for i in range(len(seeds)):
    one = jax.tree.map(lambda a: a[i], _states(seeds))
    for e in (3, 4):  # epochs epoch0, epoch0 + 1: their shuffles and draws, in that order
      one, tm = train.train_epoch(prog, one, keys[i], jnp.int32(e), data)
      vm = train.evaluate(prog, one.apply_fn, {"params": one.params}, data)  # no EMA kept
      np.testing.assert_allclose(m["train_loss"][e - 3, i], tm["loss"], rtol=2e-5)
      np.testing.assert_allclose(m["train_accuracy"][e - 3, i], tm["accuracy"], rtol=1e-6)
      np.testing.assert_allclose(m["val_loss"][e - 3, i], vm["loss"], rtol=2e-5)
    for u, v in zip(jax.tree.leaves(one.params), jax.tree.leaves(states.params)):
      np.testing.assert_allclose(v[i], u, rtol=2e-5, atol=1e-6)


def test_an_epochs_loss_in_runs_of_steps_is_each_runs_per_example_mean():
  # 7 examples in batches of 3: steps of 3, 3 and 1 real examples. TensorBoard's StepLoss.
  data = _data(n=7, targets="classes")
  keys = member_state.member_keys([3, 7])
  epoch = jax.jit(train.train_epoch, static_argnums=0)
  base = dict(loss="xent", batch_size=3, eval_batch_size=4)
  one = jax.tree.map(lambda a: a[0], _states((3, 7)))
  _, per_step = epoch(train.Program(**base, loss_chunks=3), one, keys[0], jnp.int32(0), data)
  _, two = epoch(train.Program(**base, loss_chunks=2), one, keys[0], jnp.int32(0), data)
  l_S = np.asarray(per_step["loss_chunks"])  # one run per step
  assert l_S.shape == (3,)
  np.testing.assert_allclose(per_step["loss"], (3 * l_S[0] + 3 * l_S[1] + l_S[2]) / 7, rtol=1e-6)
  # Step s is in run s * 2 // 3: steps 0 and 1, then step 2 (one example) alone.
  np.testing.assert_allclose(two["loss_chunks"], [(l_S[0] + l_S[1]) / 2, l_S[2]], rtol=1e-6)
  _, many = epoch(train.Program(**base, loss_chunks=10), one, keys[0], jnp.int32(0), data)
  np.testing.assert_allclose(many["loss_chunks"], l_S, rtol=1e-6)  # no more runs than steps
  # The compiled epochs return them per epoch and member, as each member's epoch does.
  _, m = jax.jit(train.run_epochs, static_argnums=(0, 5))(
      train.Program(**base, loss_chunks=2), _states((3, 7)), keys, jnp.int32(0), data, 2)
  assert m["train_loss_chunks"].shape == (2, 2, 2)  # epochs x members x runs
  for i in range(2):
    state = jax.tree.map(lambda a: a[i], _states((3, 7)))
    for e in range(2):
      state, tm = epoch(train.Program(**base, loss_chunks=2), state, keys[i], jnp.int32(e), data)
      np.testing.assert_allclose(m["train_loss_chunks"][e, i], tm["loss_chunks"], rtol=2e-5)


@pytest.mark.parametrize("every, steps", [(2, [2, 4]), (3, [3])])  # of 5 steps an epoch
def test_progress_ticks_once_per_period_per_epoch_not_per_member(every, steps):
  data = _data(n=10, targets="classes")
  ticks = []
  prog = train.Program(loss="xent", batch_size=2, eval_batch_size=5, progress_every=every,
                       on_progress=lambda e, s: ticks.append((int(e), int(s))))
  out = train.compile_run_epochs(prog)(_states((0, 1)), member_state.member_keys([0, 1]),
                                       jnp.int32(0), data, n_epochs=2)
  jax.block_until_ready(out)
  jax.effects_barrier()
  assert ticks == [(e, s) for e in (0, 1) for s in steps]


def test_the_compiled_program_donates_the_states_not_the_keys():
  data = _data(n=4, targets="classes")
  states, keys = _states((0, 1)), member_state.member_keys([0, 1])
  prog = train.Program(loss="xent", batch_size=2, eval_batch_size=4)
  jax.block_until_ready(train.compile_run_epochs(prog)(states, keys, jnp.int32(0), data,
                                                       n_epochs=1))
  assert all(leaf.is_deleted() for leaf in jax.tree.leaves(states.params))
  assert not keys.is_deleted()


def test_a_program_of_only_its_required_fields_is_the_plain_tutorial_program():
  prog = train.Program(loss="xent", batch_size=4, eval_batch_size=8)
  assert (prog.flip, prog.alternate_flip, prog.augment_first) == (False, False, True)
  for name in ("rotate", "translate", "cutout", "label_smoothing", "ema", "lookahead",
               "total_steps", "tta", "progress_every"):
    value = getattr(prog, name)
    assert value == 0 and type(value) in (int, float), name
  assert prog.batch_sharding is None and prog.on_progress is None
  with pytest.raises(dataclasses.FrozenInstanceError):
    prog.flip = True


# --- Member state ----------------------------------------------------------------------------

def test_a_member_without_ema_or_lookahead_keeps_no_averages_and_evaluates_its_params():
  one = _probe_state()
  many = _states((0, 1))
  for s in (one, many):
    assert (s.eval_params, s.average_state, s.eval_batch_stats) == ({}, {}, {})
    v = member_state.model_variables(s)
    assert set(v) == {"params"} and v["params"] is s.params
  v = member_state.model_variables({"params": one.params, "eval_params": {}})  # a restored dict
  assert v["params"] is one.params


def test_with_batchnorm_evaluation_pairs_the_params_with_their_running_statistics():
  stats = {"bn": {"mean": jnp.ones(2)}}
  s = _probe_state().replace(batch_stats=stats)
  v = member_state.model_variables(s)
  assert v["batch_stats"] is stats and v["params"] is s.params
  slow = {"bn": {"mean": jnp.zeros(2)}}
  v = member_state.model_variables(s.replace(eval_params={"w": 1}, eval_batch_stats=slow))
  assert v == {"params": {"w": 1}, "batch_stats": slow}


@pytest.mark.parametrize("step, total", [(1, 1), (5, 10), (10, 10), (12, 10)])
def test_lookahead_moves_the_slow_weights_by_airbenchs_rising_step(step, total):
  model = Probe()
  hp = _hp()
  s = member_state.init_state(model, make_optimizer("sgd"), jnp.zeros((1, H, W, C)), hp,
                              lookahead=1)
  slow = s.params
  fast = jax.tree.map(lambda p: p + 1.0, slow)
  s = s.replace(step=jnp.int32(step), params=fast)
  out = member_state.lookahead_step(s, 1, total)
  alpha = 1.0 - 0.95 ** 5 * min(step / total, 1.0) ** 3
  for a, b in zip(jax.tree.leaves(out.eval_params), jax.tree.leaves(slow)):
    np.testing.assert_allclose(a, b + alpha, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(out.eval_params)):
    np.testing.assert_array_equal(a, b)  # the fast weights restart from the slow
