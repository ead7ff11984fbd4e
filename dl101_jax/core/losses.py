"""What a step minimises and what evaluation counts, per example: losses and correctness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def per_example_loss(kind: str, out: jax.Array, y: jax.Array,
                     label_smoothing: float = 0.0) -> jax.Array:
  """--loss per example: softmax cross-entropy (optax's; against smoothed one-hot targets
  with label_smoothing), or the mean square error over the outputs (mse)."""
  if kind == "xent" and label_smoothing:
    targets = optax.smooth_labels(jax.nn.one_hot(y, out.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(out, targets)
  if kind == "xent":
    return optax.softmax_cross_entropy_with_integer_labels(out, y)
  return jnp.mean(jnp.square(out - y), axis=-1)


def per_example_correct(out: jax.Array, y: jax.Array) -> jax.Array:
  """argmax for several classes; a 0.5 threshold for one sigmoid output."""
  if out.shape[-1] == 1:
    return ((out[..., 0] > 0.5) == (y[..., 0] > 0.5)).astype(jnp.float32)
  return (jnp.argmax(out, axis=-1) == y).astype(jnp.float32)


def masked_mean(v_B: jax.Array, w_B: jax.Array) -> jax.Array:
  """The mean of v_B weighted by w_B (0: a padded example)."""
  # Padded examples have weight 0; dividing by the real count keeps a padded
  # last batch exactly equal to the smaller unpadded one.
  return jnp.sum(v_B * w_B) / jnp.maximum(jnp.sum(w_B), 1.0)
