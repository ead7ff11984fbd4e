"""Properties that plausible one-line bugs in the core break, written against behaviour.

Each section names the kind of bug it catches (docs/results/mutation.md lists the mutants
that showed the gap): per-step randomness, padded batches, augmentation ranges, and an
epoch of the tutorial net anchored to a reference written here, outside the engine.

Statistical checks use fixed keys, so they are deterministic; each bound is 5 standard
errors, so a correct implementation fails one with probability under 1e-6 over keys.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings, strategies as st

from dl101_jax.core import train
from dl101_jax.core.member_state import SHUFFLE, TrainState, init_state
from dl101_jax.core.models import make_model
from dl101_jax.core.optim import make_optimizer
from dl101_jax.config import Config

Z = 5.0  # standard errors in every statistical bound (two-sided false-failure rate < 6e-7)


def _stacked(state):
  return jax.tree.map(lambda a: a[None], state)


def _data(x, y, x_val=None, y_val=None, mean=0.0, std=1.0):
  arr = lambda a: None if a is None else jnp.asarray(a)
  return train.DeviceData(arr(x), arr(y), arr(x_val), arr(y_val), jnp.float32(mean),
                          jnp.float32(std))


# --- Per-step randomness: keys from (seed, epoch, step), whatever the chunking.

def _probe(record, n_in):
  """A TrainState whose model reports, each step, the inputs it sees and one draw from
  its dropout key (jax.debug.callback, ordered), and learns nothing (lr 0)."""

  def apply_fn(variables, x, train=True, dropout_rate=0.0, rngs=None, mutable=()):
    jax.debug.callback(record, x, jax.random.uniform(rngs["dropout"], (3,)), ordered=True)
    return x.reshape(x.shape[0], -1) @ variables["params"]["w"], {}

  params = {"w": jnp.zeros((n_in, 2))}
  tx = optax.sgd(0.0)
  return TrainState(step=jnp.zeros((), jnp.int32), apply_fn=apply_fn, params=params, tx=tx,
                    opt_state=tx.init(params),
                    hp={"dropout": jnp.float32(0.5), "l2": jnp.float32(0.0),
                        "l1": jnp.float32(0.0)})


def _record_epochs(x, *, seed, splits, **prog):
  """Train `sum(splits)` epochs in calls of `splits` epochs each; every step's (inputs,
  dropout draw), in order."""
  seen = []
  record = lambda x, d: seen.append((np.asarray(x), np.asarray(d)))
  state = _stacked(_probe(record, int(np.prod(x.shape[1:]))))
  program = train.Program(loss="xent", batch_size=4, eval_batch_size=4, **prog)
  run = train.compile_run_epochs(program)
  data = _data(x, np.zeros(len(x), np.int32))
  keys = jnp.stack([jax.random.PRNGKey(seed)])
  epoch = 0
  for n in splits:
    state, _ = run(state, keys, jnp.int32(epoch), data, n_epochs=n)
    epoch += n
  jax.effects_barrier()
  return seen


def _all_distinct(arrays):
  return all(not np.array_equal(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


def test_every_step_epoch_and_seed_draws_anew_and_chunking_changes_nothing():
  # Twelve copies of one image, so what differs between steps is the augmentation alone.
  img = np.arange(36, dtype=np.uint8).reshape(1, 6, 6, 1) * 7
  x = np.repeat(img, 12, axis=0)
  aug = dict(flip=True, rotate=25.0)
  one_call = _record_epochs(x, seed=0, splits=[2], **aug)
  assert len(one_call) == 6  # 2 epochs x 3 steps
  assert _all_distinct([d for _, d in one_call]), "two steps drew the same dropout key"
  assert _all_distinct([v for v, _ in one_call]), "two steps drew the same augmentation"
  chunked = _record_epochs(x, seed=0, splits=[1, 1], **aug)
  for (v1, d1), (v2, d2) in zip(one_call, chunked, strict=True):
    np.testing.assert_array_equal(d1, d2)  # the same (seed, epoch, step), the same draw
    np.testing.assert_array_equal(v1, v2)
  other_seed = _record_epochs(x, seed=1, splits=[2], **aug)
  for (v1, d1), (v2, d2) in zip(one_call, other_seed, strict=True):
    assert not np.array_equal(d1, d2) and not np.array_equal(v1, v2)


def test_each_epoch_is_a_new_permutation_of_every_example():
  # Example i is the constant image i: the inputs a step sees name the examples it drew.
  x = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None, None], (10, 2, 2, 1))
  seen = _record_epochs(np.ascontiguousarray(x), seed=3, splits=[3])
  ids = [v[:, 0, 0, 0].astype(int) for v, _ in seen]  # 3 epochs x 3 steps of 4
  orders = [np.concatenate(ids[3 * e:3 * e + 3])[:10] for e in range(3)]
  for order in orders:
    assert sorted(order) == list(range(10))  # every example exactly once, then the padding
  assert _all_distinct(orders), "two epochs shuffled the same way"


def test_alternating_flips_mirror_every_image_on_odd_epochs():
  key = jax.random.PRNGKey(0)
  f0, f1, f2 = (np.asarray(train.alternating_flips(key, 4000, jnp.int32(e))) for e in range(3))
  np.testing.assert_array_equal(f1, ~f0)
  np.testing.assert_array_equal(f2, f0)
  assert abs(f0.mean() - 0.5) < Z * math.sqrt(0.25 / 4000)


# --- Padded batches: the repeats that fill the last batch count nowhere.

def _reference_xent(logits, y):
  logp = logits - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1,
                                keepdims=True)) - logits.max(1, keepdims=True)
  return -logp[np.arange(len(y)), y], (np.argmax(logits, 1) == y).astype(np.float64)


@functools.lru_cache(maxsize=None)
def _linear_run(batch_size, eval_batch_size):
  return train.compile_run_epochs(train.Program(loss="xent", batch_size=batch_size,
                                                eval_batch_size=eval_batch_size))


@settings(max_examples=5, deadline=None, derandomize=True)
@given(n=st.integers(5, 11), n_val=st.integers(3, 7), batch=st.sampled_from([3, 4]),
       seed=st.integers(0, 1000))
def test_loss_and_accuracy_are_over_exactly_the_n_examples(n, n_val, batch, seed):
  """A linear softmax model at learning rate 0: the epoch's training loss and accuracy,
  and validation's, equal a numpy mean over exactly the N examples, though N is not a
  multiple of the batch (training) or of the evaluation batch (validation)."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(4, 3)).astype(np.float32)
  x, x_val = (rng.normal(size=(k, 2, 2, 1)).astype(np.float32) for k in (n, n_val))
  y, y_val = (rng.integers(0, 3, k).astype(np.int32) for k in (n, n_val))
  tx = optax.sgd(0.0)
  apply_fn = lambda v, x, train=True, dropout_rate=0.0, rngs=None, mutable=None: (
      (x.reshape(x.shape[0], -1) @ v["params"]["w"], {}) if mutable is not None
      else x.reshape(x.shape[0], -1) @ v["params"]["w"])
  params = {"w": jnp.asarray(w)}
  state = TrainState(step=jnp.zeros((), jnp.int32), apply_fn=apply_fn, params=params, tx=tx,
                     opt_state=tx.init(params),
                     hp={"dropout": jnp.float32(0.0), "l2": jnp.float32(0.0),
                         "l1": jnp.float32(0.0)})
  _, m = _linear_run(batch, 2)(_stacked(state), jnp.stack([jax.random.PRNGKey(0)]),
                               jnp.int32(0), _data(x, y, x_val, y_val), n_epochs=1)
  for split, (xs, ys) in {"train": (x, y), "val": (x_val, y_val)}.items():
    loss, correct = _reference_xent(xs.reshape(len(xs), -1).astype(np.float64) @ w, ys)
    np.testing.assert_allclose(float(m[f"{split}_loss"][0, 0]), loss.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m[f"{split}_accuracy"][0, 0]), correct.mean(), rtol=1e-6)


# --- Augmentation ranges: each parameter covers its stated range, symmetrically.

B = 4000  # images per draw: one call of training_inputs


def _inputs(x, **kw):
  kw = {"flip": False, "rotate": 0.0, **kw}
  return np.asarray(train.training_inputs(jax.random.PRNGKey(7), jnp.asarray(x), **kw))


def _uniform_counts_ok(values, support):
  """Every value of `support` appears, each at its uniform rate within Z standard errors."""
  p = 1.0 / len(support)
  freq = np.array([(values == v).mean() for v in support])
  assert set(np.unique(values)) <= set(support), np.unique(values)
  assert np.all(np.abs(freq - p) < Z * math.sqrt(p * (1 - p) / len(values))), freq


def test_rotation_is_half_the_time_uniform_in_plus_minus_25_degrees():
  # A dot 20 px right of the centre of a 41 x 41 image: where its mass lands is the angle.
  x = np.zeros((B, 41, 41, 1), np.float32)
  x[:, 20, 40] = 1.0
  out = _inputs(x, rotate=25.0)[..., 0]
  rows, cols = np.meshgrid(np.arange(41), np.arange(41), indexing="ij")
  mass = out.sum(axis=(1, 2))
  cy, cx = ((out * g).sum(axis=(1, 2)) / mass - 20 for g in (rows, cols))
  angle = np.degrees(np.arctan2(cy, cx))
  turned = np.abs(angle) > 0.05
  assert abs(turned.mean() - 0.5) < Z * math.sqrt(0.25 / B)
  a = angle[turned]
  assert np.all(np.abs(a) < 25.5), (a.min(), a.max())  # the centroid errs < 0.5 degree
  assert a.min() < -23 and a.max() > 23
  assert abs(a.mean()) < Z * (50 / math.sqrt(12)) / math.sqrt(len(a))  # symmetric about 0
  quarters = np.digitize(a, [-12.5, 0.0, 12.5])  # four equal parts of the range
  _uniform_counts_ok(quarters, [0, 1, 2, 3])


def test_translation_shifts_uniformly_up_to_the_bound_each_way():
  x = np.zeros((B, 21, 21, 1), np.float32)
  x[:, 10, 10] = 1.0  # stays inside for any shift up to 4
  out = _inputs(x, translate=4)[..., 0]
  at = out.reshape(B, -1).argmax(1)
  dy, dx = at // 21 - 10, at % 21 - 10
  for d in (dy, dx):
    _uniform_counts_ok(d, list(range(-4, 5)))
  assert not np.array_equal(dy, dx)  # two independent draws


def test_flip_mirrors_half_the_images():
  x = np.zeros((B, 4, 4, 1), np.float32)
  x[:, 1, 0] = 1.0
  out = _inputs(x, flip=True)
  mirrored = out[:, 1, 3, 0] == 1.0
  assert np.all(mirrored | (out[:, 1, 0, 0] == 1.0))
  assert abs(mirrored.mean() - 0.5) < Z * math.sqrt(0.25 / B)


def test_cutout_squares_lie_inside_at_uniform_corners():
  out = _inputs(np.ones((B, 8, 8, 1), np.float32), cutout=3)[..., 0]
  cut = out == 0
  assert np.all(cut.sum(axis=(1, 2)) == 9)  # the whole 3 x 3 square, inside the image
  y0, x0 = cut.any(axis=2).argmax(1), cut.any(axis=1).argmax(1)
  for v in (y0, x0):
    _uniform_counts_ok(v, list(range(6)))
  assert np.all(cut[np.arange(B), y0 + 2, x0 + 2])  # a square, not a stripe


# --- One epoch of the tutorial net against a reference written here.

def _reference_net(p, x):
  """conv32-pool-conv64-conv64-pool-fc512 in jax.numpy: lax's own convolution (the engine
  uses im2col slices on CPU), reduce_window max pools, ReLUs, the dense layers."""
  conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision="highest") + k["bias"].reshape(1, 1, 1, -1)
  pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                         "VALID")
  x = pool(jax.nn.relu(conv(x, p["conv0_0"])))
  x = pool(jax.nn.relu(conv(jax.nn.relu(conv(x, p["conv1_0"])), p["conv1_1"])))
  x = jax.nn.relu(jnp.dot(x.reshape(x.shape[0], -1), p["fc0"]["kernel"], precision="highest")
                  + p["fc0"]["bias"][None])
  return jnp.dot(x, p["head"]["kernel"], precision="highest") + p["head"]["bias"][None]


def test_one_epoch_of_the_tutorial_net_equals_a_reference_sgd_epoch():
  n, batch, lr, seed = 10, 4, 0.05, 0
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)
  y = rng.integers(0, 10, n).astype(np.int32)
  config = Config(dataset="digits", net="conv32-pool-conv64-conv64-pool-fc512")
  model = make_model(config, 10, platform="cpu")
  tx = make_optimizer("sgd")
  hp = {"seed": jnp.int32(seed), "learning_rate": jnp.float32(lr),
        "weight_decay": jnp.float32(0), "dropout": jnp.float32(0), "l2": jnp.float32(0),
        "l1": jnp.float32(0)}
  state = init_state(model, tx, jnp.zeros((1, 8, 8, 1)), hp)
  mean, std = x.mean(dtype=np.float64), x.std(dtype=np.float64)  # featurewise: one scalar
  prog = train.Program(loss="xent", batch_size=batch, eval_batch_size=batch)
  states, m = train.compile_run_epochs(prog)(
      _stacked(state), jnp.stack([jax.random.PRNGKey(seed)]), jnp.int32(0),
      _data(x, y, mean=mean, std=std), n_epochs=1)

  # The reference: the epoch's order from the documented keys, then plain SGD on each
  # batch, the last one holding the 2 left-over examples (no padding).
  key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), SHUFFLE), 0)
  order = np.asarray(jax.random.permutation(key, n))
  xn = ((x.astype(np.float64) - mean) / std).astype(np.float32)
  p = jax.tree.map(np.asarray, jax.device_get(state.params))
  loss_fn = lambda p, xb, yb: jnp.mean(
      -jax.nn.log_softmax(_reference_net(p, xb))[jnp.arange(len(yb)), yb])
  total = 0.0
  for i in range(0, n, batch):
    b = order[i:i + batch]
    loss, g = jax.value_and_grad(loss_fn)(p, xn[b], y[b])
    total += float(loss) * len(b)
    p = jax.tree.map(lambda w, d: w - lr * d, p, g)
  engine = jax.tree.map(lambda a: np.asarray(a[0]), states.params)
  for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(p),
                               jax.tree.leaves(engine), strict=True):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6,
                               err_msg=jax.tree_util.keystr(path))
  np.testing.assert_allclose(float(m["train_loss"][0, 0]), total / n, rtol=1e-5)
  assert int(states.step[0]) == 3


def test_every_purpose_folds_its_own_tag_into_the_seed():
  """Two purposes sharing a fold_in tag draw the same numbers (a shuffle correlated with the
  init, PBT's explore with its sample): the tags of one seed's key must all differ."""
  from dl101_jax.core import member_state as ms, population as pop

  tags = [ms.INIT, ms.SHUFFLE, ms.STEP, ms.FLIP, pop.SAMPLE, pop.EXPLORE]
  assert len(set(tags)) == len(tags), tags
