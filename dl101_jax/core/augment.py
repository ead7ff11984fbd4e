"""On-device image augmentation (TFLearn's ImageAugmentation), batched and jittable.

Runs inside the jitted train step. By default on raw pixels, before
normalization, as TFLearn's data flow did (tflearn/data_flow.py applies
ImageAugmentation, then ImagePreprocessing): 'zeros outside' a rotated image
is black. `train.training_inputs` owns that order.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy import ndimage


def flip_lr(x_BxHxWxC: jax.Array, do_B: jax.Array) -> jax.Array:
  """Mirror the images where do_B is True."""
  return jnp.where(do_B[:, None, None, None], x_BxHxWxC[:, :, ::-1, :], x_BxHxWxC)


def rotate(x_BxHxWxC: jax.Array, radians_B: jax.Array) -> jax.Array:
  """Rotate each image about its centre; same size, zeros outside.

  Like scipy.ndimage.rotate(reshape=False) but bilinear (order=1), which is
  what jax.scipy.ndimage.map_coordinates offers; TFLearn used cubic splines.
  """
  _, h, w, _ = x_BxHxWxC.shape
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0

  def one(img_HxWxC, theta):
    c, s = jnp.cos(theta), jnp.sin(theta)
    # Inverse map: each output pixel samples the input at the point rotated by -theta.
    src_y = c * (yy - cy) + s * (xx - cx) + cy
    src_x = -s * (yy - cy) + c * (xx - cx) + cx
    sample = lambda ch: ndimage.map_coordinates(ch, [src_y, src_x], order=1, mode="constant",
                                                cval=0.0)
    return jax.vmap(sample, in_axes=2, out_axes=2)(img_HxWxC.astype(jnp.float32))

  return jax.vmap(one)(x_BxHxWxC, radians_B).astype(x_BxHxWxC.dtype)


def translate(x_BxHxWxC: jax.Array, dy_B: jax.Array, dx_B: jax.Array, pad: int) -> jax.Array:
  """Shift each image by (dy, dx) pixels, |dy|, |dx| <= pad, filling from a reflect-padded
  copy: a crop of the padded image (airbench's random translate)."""
  _, h, w, c = x_BxHxWxC.shape
  x = jnp.pad(x_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  crop = lambda img, dy, dx: jax.lax.dynamic_slice(img, (pad - dy, pad - dx, 0), (h, w, c))
  return jax.vmap(crop)(x, dy_B, dx_B)


def augment(key: jax.Array, x_BxHxWxC: jax.Array, *, flip: bool = True,
            max_degrees: float = 25.0, max_shift: int = 0,
            flip_B: jax.Array | None = None) -> jax.Array:
  """Random flip (p=0.5; or where `flip_B` says), then random rotation (p=0.5, uniform in
  +-max_degrees), then a random translation by up to max_shift pixels each way."""
  b = x_BxHxWxC.shape[0]
  k_flip, k_rot, k_angle = jax.random.split(key, 3)
  if flip:
    x_BxHxWxC = flip_lr(x_BxHxWxC, jax.random.bernoulli(k_flip, 0.5, (b,))
                        if flip_B is None else flip_B)
  if max_degrees > 0:
    do_rot = jax.random.bernoulli(k_rot, 0.5, (b,))
    angle = jax.random.uniform(k_angle, (b,), minval=-max_degrees, maxval=max_degrees)
    x_BxHxWxC = rotate(x_BxHxWxC, jnp.where(do_rot, jnp.deg2rad(angle), 0.0))
  if max_shift > 0:
    d_2xB = jax.random.randint(jax.random.fold_in(key, 3), (2, b), -max_shift, max_shift + 1)
    x_BxHxWxC = translate(x_BxHxWxC, d_2xB[0], d_2xB[1], max_shift)
  return x_BxHxWxC


def cutout(key: jax.Array, x_BxHxWxC: jax.Array, size: int, fill: float = 0.0) -> jax.Array:
  """airbench96's cutout: a size x size square, wholly inside each image at a uniformly
  drawn corner, set to `fill` (0 on normalized images: the mean colour)."""
  b, h, w, _ = x_BxHxWxC.shape
  k_y, k_x = jax.random.split(key)
  y0_B = jax.random.randint(k_y, (b,), 0, h - size + 1)
  x0_B = jax.random.randint(k_x, (b,), 0, w - size + 1)
  rows_BxH = jnp.arange(h)[None, :] - y0_B[:, None]
  cols_BxW = jnp.arange(w)[None, :] - x0_B[:, None]
  inside_BxHxW = (((rows_BxH >= 0) & (rows_BxH < size))[:, :, None]
                  & ((cols_BxW >= 0) & (cols_BxW < size))[:, None, :])
  return jnp.where(inside_BxHxW[..., None], jnp.asarray(fill, x_BxHxWxC.dtype), x_BxHxWxC)


def tta_logits(apply: Callable[[jax.Array], jax.Array], x_BxHxWxC: jax.Array,
               level: int) -> jax.Array:
  """Test-time augmentation as airbench94 does it: 0 none; 1 the mean of the logits of
  the image and its mirror; 2 that, weighted 1/2, plus 1/4 each for the image shifted
  one pixel up-left and down-right (reflect-padded), each also mirrored."""
  def mirrored(x):
    return 0.5 * (apply(x) + apply(x[:, :, ::-1, :]))

  if level == 0:
    return apply(x_BxHxWxC)
  if level == 1:
    return mirrored(x_BxHxWxC)
  b = x_BxHxWxC.shape[0]
  ones = jnp.ones((b,), jnp.int32)
  return (0.5 * mirrored(x_BxHxWxC)
          + 0.25 * mirrored(translate(x_BxHxWxC, -ones, -ones, 1))
          + 0.25 * mirrored(translate(x_BxHxWxC, ones, ones, 1)))
