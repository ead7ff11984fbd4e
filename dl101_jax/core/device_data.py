"""A dataset resident on the device: the one pytree the compiled programs read data from."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class DeviceData:
  """A dataset on the device: uint8 images (or float features) and labels."""

  x_train: jax.Array
  y_train: jax.Array
  x_val: jax.Array | None
  y_val: jax.Array | None
  mean: jax.Array  # normalization statistics from the training split
  std: jax.Array

  def normalize(self, x: jax.Array) -> jax.Array:
    # mean/std are a scalar or one value per channel: align them with x's last axis.
    shape = (1,) * (x.ndim - self.mean.ndim) + self.mean.shape
    return (x.astype(jnp.float32) - self.mean.reshape(shape)) / self.std.reshape(shape)
