"""Flax Linen networks: the OR perceptron and the tutorial's conv nets.

Hyperparameters that members of a vmapped group may vary (the dropout rate)
are call arguments, not module attributes, so they can be traced arrays.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax.config import Config

# TFLearn 0.3.2's defaults (tflearn/layers/conv.py, core.py): conv_2d uses
# weights_init='uniform_scaling', i.e. uniform in +-sqrt(3 / fan_in) (a unit-variance
# scaling); fully_connected uses truncated_normal(stddev=0.02) (TF's: redrawn beyond
# 2 std), the output layer and the OR neuron included. Biases start at zero.
TFLEARN_CONV_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
TFLEARN_DENSE_INIT = nn.initializers.truncated_normal(stddev=0.02)
LECUN_INIT = nn.initializers.lecun_normal()
# PyTorch's default for Conv2d and Linear weights (kaiming_uniform with a=sqrt(5)): uniform
# in +-1/sqrt(fan_in). airbench94's hyperparameters were tuned with it: behind BatchNorm a
# kernel's scale sets its effective learning rate, so Flax's lecun_normal (sqrt(3) larger)
# would train it more slowly.
TORCH_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def _inits(init: str) -> tuple[Any, Any]:
  """(conv kernel init, dense kernel init) for --init."""
  if init == "tflearn":
    return TFLEARN_CONV_INIT, TFLEARN_DENSE_INIT
  return LECUN_INIT, LECUN_INIT


class Perceptron(nn.Module):
  """One sigmoid neuron: Dense(1) + sigmoid. Outputs probabilities."""

  init_scheme: str = "tflearn"  # --init (Module.init is a method)

  @nn.compact
  def __call__(self, x_BxF, *, train: bool = False, dropout_rate: Any = 0.0):
    del train, dropout_rate  # nothing stochastic in one neuron
    return nn.sigmoid(nn.Dense(1, kernel_init=_inits(self.init_scheme)[1], name="head")(x_BxF))


def partial_dirac(base: Any) -> Any:
  """airbench94's conv init: `base`, then the first C_in filters made the identity (its
  torch.nn.init.dirac_ on w[:C_in]), so each conv starts by passing its input through.

  Hand-written: neither Flax nor jax.nn.initializers has a Dirac init.
  """
  def init(key, shape_HxWxIxO, dtype=jnp.float32):
    kh, kw, cin, cout = shape_HxWxIxO
    n = min(cin, cout)
    eye = jnp.zeros((kh, kw, cin, n), dtype).at[kh // 2, kw // 2].set(jnp.eye(cin, n, dtype=dtype))
    return base(key, shape_HxWxIxO, dtype).at[..., :n].set(eye)
  return init


def max_pool_2x2(x_BxHxWxC: jax.Array) -> jax.Array:
  """2x2/2 max-pool as reshape + max ('VALID': odd edges are cropped).

  Same values as nn.max_pool(x, (2, 2), (2, 2)); its gradient is a cheap
  elementwise mask instead of select-and-scatter, which is slow on CPU.
  """
  b, h, w, c = x_BxHxWxC.shape
  x = x_BxHxWxC[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def im2col_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, precision=None):
  """lax.conv_general_dilated for stride-1, undilated NHWC convs, as shifted slices + one matmul.

  XLA:CPU runs convolutions inside a while loop (our scanned epoch) through a
  slow generic path, many times slower than outside one (jax-ml/jax#12868;
  measured in benchmarks/README.md, "Where the CPU time goes");
  slices, a concat and a dot have no such cliff, and their gradients are
  matmuls too. Same values up to float rounding. Other convs fall back to lax.
  """
  plain = (all(s == 1 for s in window_strides) and not any(d != 1 for d in (lhs_dilation or ()))
           and not any(d != 1 for d in (rhs_dilation or ())) and feature_group_count == 1
           and lhs.ndim == 4 and (not isinstance(padding, str) or padding in ("SAME", "VALID")))
  if not plain:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                        rhs_dilation, dimension_numbers, feature_group_count,
                                        precision=precision)
  b, h, w, c = lhs.shape
  kh, kw, _, f = rhs.shape
  if padding == "SAME":  # stride 1: output size = input size
    padding = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
  elif padding == "VALID":
    padding = (0, 0), (0, 0)
  (pt, pb), (pl, pr) = padding
  x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  oh, ow = h + pt + pb - kh + 1, w + pl + pr - kw + 1
  cols = jnp.concatenate([x[:, i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)],
                         axis=-1)
  y = jnp.dot(cols.reshape(b * oh * ow, kh * kw * c), rhs.reshape(kh * kw * c, f),
              precision=precision)
  return y.reshape(b, oh, ow, f)


def dropout(key: jax.Array, x: jax.Array, rate: jax.Array) -> jax.Array:
  """Inverted dropout whose rate may be a traced scalar (rate 0 is the identity)."""
  keep = 1.0 - rate
  mask = jax.random.uniform(key, x.shape) < keep
  return jnp.where(mask, x / keep.astype(x.dtype), jnp.zeros_like(x))


class ConvNet(nn.Module):
  """Layer sets of conv3x3('same')+ReLU ending in a 2x2 max-pool, then fc+ReLU, then fc.

  layer_sets=((32,), (64, 64)), fc=(512,) is conv32-pool-conv64-conv64-pool-fc512;
  pool_last=False drops the last set's pool. With `dropout`, a dropout layer (rate given at call time) precedes the last fc.
  With `batch_norm`, every conv is conv (no bias) + BatchNorm + ReLU; in training
  BatchNorm uses the batch's statistics and updates its running averages (the
  'batch_stats' collection), in evaluation it uses those averages.
  Outputs logits; works on any HxWxC input.
  """

  layer_sets: Sequence[Sequence[int]]
  fc: Sequence[int]
  num_classes: int
  dropout: bool = False
  pool_last: bool = True
  init_scheme: str = "tflearn"  # --init: "tflearn" or "lecun" (see _inits); Module.init is taken
  dtype: Any = jnp.float32
  im2col: bool = False  # convs as slices + matmul (fast on CPU); False uses XLA's conv
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x_BxHxWxC, *, train: bool = False, dropout_rate: Any = 0.0):
    conv_init, dense_init = _inits(self.init_scheme)
    x = x_BxHxWxC.astype(self.dtype)
    for i, convs in enumerate(self.layer_sets):
      for j, features in enumerate(convs):
        x = nn.Conv(features, (3, 3), padding="SAME", dtype=self.dtype, kernel_init=conv_init,
                    name=f"conv{i}_{j}", use_bias=not self.batch_norm,
                    conv_general_dilated=im2col_conv if self.im2col else None)(x)
        if self.batch_norm:  # PyTorch's and Keras' defaults: momentum 0.9 (0.1 new), eps 1e-5
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                           dtype=self.dtype, name=f"bn{i}_{j}")(x)
        x = nn.relu(x)
      if self.pool_last or i < len(self.layer_sets) - 1:
        x = max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)
    for k, width in enumerate(self.fc):
      x = nn.relu(nn.Dense(width, dtype=self.dtype, kernel_init=dense_init, name=f"fc{k}")(x))
    if self.dropout and train:
      x = dropout(self.make_rng("dropout"), x, jnp.asarray(dropout_rate, jnp.float32))
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init,
                    name="head")(x).astype(jnp.float32)


def whitening_kernel(x_NxHxWxC: np.ndarray, size: int = 2, eps: float = 5e-4) -> np.ndarray:
  """airbench's frozen first conv: size x size x C x 2D filters, D = C * size**2.

  The eigenvectors of the training images' patch covariance, scaled by 1/sqrt(eigenvalue
  + eps), and their negatives (so a following GELU loses nothing): the conv's outputs
  are decorrelated, unit-variance patch coordinates. Hand-written: no library offers
  a data-dependent conv init. Float64 on the host, once per run.
  """
  x = np.asarray(x_NxHxWxC, np.float64)
  n, h, w, c = x.shape
  patches = np.stack([x[:, i:h - size + 1 + i, j:w - size + 1 + j, :]
                      for i in range(size) for j in range(size)], axis=3)  # N,H',W',k*k,C
  flat = patches.reshape(-1, size * size * c)
  cov = flat.T @ flat / len(flat)
  eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
  order = eigenvalues.argsort()[::-1]
  # Clamped: round-off makes a degenerate direction's eigenvalue slightly negative.
  scaled = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0.0) + eps)
  kernel = scaled.reshape(size, size, c, size * size * c)  # HWIO, the patch order above
  return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


class AirbenchNet(nn.Module):
  """airbench94's network (Jordan 2024): a frozen 2x2 whitening conv + GELU, three blocks of
  conv-pool-BatchNorm-GELU-conv-BatchNorm-GELU (widths 64/256/256), a global max-pool, and
  a bias-free linear head scaled by 1/9. Its inits: PyTorch's defaults, the convs' first
  C_in filters the identity (`partial_dirac`).

  The whitening kernel is a constant of the program (`whitening_kernel`, a tuple so the
  module stays hashable); its bias trains. BatchNorm as airbench's: no scale, running
  averages with momentum 0.6 (PyTorch's 0.4), eps 1e-12.
  """

  whiten: tuple  # nested tuples of floats: 2 x 2 x C x 2D
  num_classes: int
  widths: Sequence[int] = (64, 256, 256)
  dtype: Any = jnp.float32
  im2col: bool = False
  # airbench94_muon's head: its init rescaled to std 1, its outputs divided by the width
  # (256) instead of 9.
  muon_head: bool = False

  @nn.compact
  def __call__(self, x_BxHxWxC, *, train: bool = False, dropout_rate: Any = 0.0):
    del dropout_rate
    kernel = jnp.asarray(self.whiten, self.dtype)
    x = jax.lax.conv_general_dilated(x_BxHxWxC.astype(self.dtype), kernel, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    bias = self.param("whiten_bias", nn.initializers.zeros, (kernel.shape[-1],))
    x = x + bias.reshape(1, 1, 1, -1).astype(self.dtype)
    self.sow("intermediates", "whiten_bias", x)  # the whitening conv's output, for layer tables
    x = nn.gelu(x, approximate=False)
    conv = lambda f, name: nn.Conv(f, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype,
                                   name=name, kernel_init=partial_dirac(TORCH_INIT),
                                   conv_general_dilated=im2col_conv if self.im2col else None)
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.6, epsilon=1e-12,
                                     use_scale=False, dtype=self.dtype, name=name)
    for i, width in enumerate(self.widths):
      x = conv(width, f"block{i}_conv0")(x)
      x = max_pool_2x2(x)
      x = nn.gelu(norm(f"block{i}_norm0")(x), approximate=False)
      x = conv(width, f"block{i}_conv1")(x)
      x = nn.gelu(norm(f"block{i}_norm1")(x), approximate=False)
    x = jnp.max(x, axis=(1, 2))  # airbench's MaxPool2d(3) on its 3x3 maps, for any size
    out = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype,
                   kernel_init=unit_std(TORCH_INIT) if self.muon_head else TORCH_INIT,
                   name="head")(x)
    return (out / (self.widths[-1] if self.muon_head else 9.0)).astype(jnp.float32)


def unit_std(base: Any) -> Any:
  """`base`'s draw divided by its own std (airbench94_muon's head: w *= 1 / w.std())."""
  return lambda key, shape, dtype=jnp.float32: (lambda w: w / jnp.std(w))(base(key, shape, dtype))


def make_model(config: Config, num_classes: int, *, dropout: bool | None = None,
               platform: str | None = None, whiten: np.ndarray | None = None) -> nn.Module:
  """The network a config names; `dropout` forces the dropout layer (for groups).

  On CPU, convolutions use `im2col_conv`; elsewhere XLA's native convolution.
  'airbench' needs `whiten`, its first conv's kernel (`whitening_kernel` of the data).
  """
  im2col = (platform or jax.default_backend()) == "cpu"
  dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
  if config.is_airbench:
    if whiten is None:
      raise ValueError("the airbench net needs its whitening kernel (models.whitening_kernel)")
    return AirbenchNet(whiten=_nested_tuple(whiten), num_classes=num_classes, dtype=dtype,
                       im2col=im2col, muon_head=config.net == "airbench_muon")
  spec = config.net_spec
  if spec.is_perceptron:
    return Perceptron(init_scheme=config.init)
  return ConvNet(layer_sets=spec.layer_sets, fc=spec.fc, pool_last=spec.pool_last,
                 num_classes=num_classes, init_scheme=config.init,
                 dropout=config.dropout > 0 if dropout is None else dropout,
                 batch_norm=config.batch_norm, dtype=dtype, im2col=im2col)


def _nested_tuple(a: np.ndarray) -> tuple:
  return tuple(_nested_tuple(v) for v in a) if a.ndim > 1 else tuple(float(v) for v in a)
