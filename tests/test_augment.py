"""Augmentation properties (hypothesis) and 'evaluation never augments'."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dl101_jax.core import augment, train

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)
images = st.tuples(st.sampled_from([1, 4]), st.sampled_from([5, 8]), st.sampled_from([1, 3]),
                   st.integers(0, 1000))


def make(b, hw, c, seed, dtype=jnp.float32):
  x = np.random.default_rng(seed).normal(size=(b, hw, hw, c))
  return jnp.asarray(x, dtype)


@SETTINGS
@given(images)
def test_flip_twice_is_identity(spec):
  x = make(*spec)
  do = jax.random.bernoulli(jax.random.PRNGKey(spec[-1]), 0.5, (x.shape[0],))
  assert np.array_equal(augment.flip_lr(augment.flip_lr(x, do), do), x)


@SETTINGS
@given(images)
def test_flip_mirrors_the_chosen_images_only(spec):
  x = make(*spec)
  do = jnp.arange(x.shape[0]) % 2 == 0
  y = augment.flip_lr(x, do)
  for i in range(x.shape[0]):
    assert np.array_equal(y[i], x[i, :, ::-1] if do[i] else x[i])


@SETTINGS
@given(images)
def test_rotation_by_zero_is_identity(spec):
  x = make(*spec)
  assert np.array_equal(augment.rotate(x, jnp.zeros(x.shape[0])), x)


@SETTINGS
@given(images)
def test_rotation_by_90_degrees_is_rot90(spec):
  x = make(*spec)
  y = augment.rotate(x, jnp.full(x.shape[0], jnp.pi / 2))
  # Counter-clockwise in (row, col) image coordinates, as scipy.ndimage.rotate.
  np.testing.assert_allclose(y, np.rot90(np.asarray(x), k=1, axes=(1, 2)), atol=1e-4)


@SETTINGS
@given(images, st.sampled_from([jnp.float32, jnp.bfloat16]))
def test_augment_keeps_shape_and_dtype(spec, dtype):
  x = make(*spec, dtype=dtype)
  y = augment.augment(jax.random.PRNGKey(spec[-1]), x, flip=True, max_degrees=25.0)
  assert y.shape == x.shape and y.dtype == x.dtype


MEAN, STD = 120.0, 60.0


def _normalize(x):
  return (x.astype(jnp.float32) - MEAN) / STD


def test_tflearn_order_rotated_corners_are_normalized_black():
  # A white image rotated by 45 degrees: its corners come from outside the image.
  x = jnp.full((2, 9, 9, 3), 255.0)
  rotated = augment.rotate(x, jnp.full(2, jnp.pi / 4))
  out = np.asarray(_normalize(rotated))
  for corner in (out[:, 0, 0], out[:, 0, -1], out[:, -1, 0], out[:, -1, -1]):
    np.testing.assert_array_equal(corner, (0.0 - MEAN) / STD)  # black, then normalized
  np.testing.assert_allclose(out[:, 4, 4], (255.0 - MEAN) / STD, rtol=1e-6)  # the centre stays


@pytest.mark.parametrize("augment_first", [True, False])
def test_training_inputs_order(augment_first):
  """train.training_inputs augments then normalizes by default; else takes normalized input."""
  rng = np.random.default_rng(0)
  raw = jnp.asarray(rng.integers(0, 256, (16, 9, 9, 3)), jnp.float32)
  key = jax.random.PRNGKey(3)
  if augment_first:
    got = train.training_inputs(key, raw, flip=True, rotate=25.0, normalize=_normalize)
    want = _normalize(augment.augment(key, raw, flip=True, max_degrees=25.0))
    other = augment.augment(key, _normalize(raw), flip=True, max_degrees=25.0)
  else:
    got = train.training_inputs(key, _normalize(raw), flip=True, rotate=25.0)
    want = augment.augment(key, _normalize(raw), flip=True, max_degrees=25.0)
    other = _normalize(augment.augment(key, raw, flip=True, max_degrees=25.0))
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # The two orders differ exactly where a rotation reached outside the image.
  assert not np.allclose(got, other, atol=1e-3)


def test_rotation_angles_stay_within_range():
  # A single bright pixel off-centre lands on a circle; its angle is within +-25 degrees.
  x = jnp.zeros((256, 21, 21, 1)).at[:, 10, 19, 0].set(1.0)
  y = np.asarray(augment.augment(jax.random.PRNGKey(0), x, flip=False, max_degrees=25.0))
  rows, cols = np.meshgrid(np.arange(21), np.arange(21), indexing="ij")
  w = y[..., 0]
  cy = (w * rows).sum((1, 2)) / w.sum((1, 2))
  cx = (w * cols).sum((1, 2)) / w.sum((1, 2))
  angles = np.degrees(np.arctan2(-(cy - 10), cx - 10))
  assert np.all(np.abs(angles) <= 25.5)
  rotated = np.abs(angles) > 0.5
  assert 0.3 < rotated.mean() < 0.7  # p = 0.5


def test_evaluation_never_augments():
  from dl101_jax.core.models import ConvNet

  model = ConvNet(layer_sets=((4,),), fc=(8,), num_classes=3, im2col=True)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"]
  rng = np.random.default_rng(0)
  data = train.DeviceData(jnp.asarray(rng.integers(0, 255, (10, 8, 8, 1)), jnp.uint8),
                          jnp.zeros(10, jnp.int32),
                          jnp.asarray(rng.integers(0, 255, (7, 8, 8, 1)), jnp.uint8),
                          jnp.asarray(rng.integers(0, 3, 7), jnp.int32), jnp.float32(100.0),
                          jnp.float32(50.0))
  plain = train.Program("xent", 5, 3)
  augmenting = train.Program("xent", 5, 3, flip=True, rotate=25.0)
  a = train.evaluate(plain, model.apply, {"params": params}, data)
  b = train.evaluate(augmenting, model.apply, {"params": params}, data)
  assert float(a["loss"]) == float(b["loss"]) and float(a["accuracy"]) == float(b["accuracy"])


def test_rotation_by_180_degrees_of_a_non_square_image_turns_it_about_its_centre():
  x = jnp.arange(2 * 5 * 4 * 2, dtype=jnp.float32).reshape(2, 5, 4, 2)
  got = augment.rotate(x, jnp.full((2,), jnp.pi))
  np.testing.assert_allclose(got, x[:, ::-1, ::-1, :], atol=1e-3)


def test_augment_does_nothing_at_zero_and_something_at_its_smallest_setting():
  key = jax.random.PRNGKey(0)
  x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (16, 6, 7, 2)) * 255)
  same = augment.augment(key, x, flip=False, max_degrees=0.0, max_shift=0)
  assert np.array_equal(np.asarray(same), np.asarray(x))
  changed = lambda **kw: int((np.abs(np.asarray(augment.augment(key, x, flip=False, **kw)) - x)
                              .reshape(16, -1).max(axis=1) > 1e-3).sum())
  assert 0 < changed(max_degrees=0.5, max_shift=0) < 16  # rotation: about half the images
  assert changed(max_degrees=0.0, max_shift=1) > 0


def test_augments_defaults_are_tflearns_flip_and_25_degrees():
  import inspect

  defaults = {k: p.default for k, p in inspect.signature(augment.augment).parameters.items()
              if p.default is not inspect.Parameter.empty}
  assert defaults == {"flip": True, "max_degrees": 25.0, "max_shift": 0, "flip_B": None}
