"""Networks: TFLearn's initializers, parameter counts, the pool, and `--net` parsing."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dl101_jax.config import Config, NetSpec, parse_net
from dl101_jax.core.models import (ConvNet, Perceptron, dropout, im2col_conv, make_model,
                                   max_pool_2x2)


def _params(net: str, init: str = "tflearn", seed: int = 0):
  model = make_model(Config(dataset="cifar10", net=net, init=init), 10, platform="cpu")
  return traverse_util.flatten_dict(
      model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 32, 32, 3)))["params"])


def _count(flat) -> int:
  return sum(int(np.prod(v.shape)) for v in flat.values())


def conv(k, cin, cout):
  return k * k * cin * cout + cout


def dense(nin, nout):
  return nin * nout + nout


@pytest.mark.parametrize("net,expected", [
    # conv32-pool-fc512: 16x16x32 into fc512.
    ("conv32-pool-fc512", conv(3, 3, 32) + dense(16 * 16 * 32, 512) + dense(512, 10)),
    ("conv32-pool-conv64-pool-conv64-pool-fc512",
     conv(3, 3, 32) + conv(3, 32, 64) + conv(3, 64, 64) + dense(4 * 4 * 64, 512) + dense(512, 10)),
    ("conv32-pool-conv64-conv64-pool-fc512",
     conv(3, 3, 32) + conv(3, 32, 64) + conv(3, 64, 64) + dense(8 * 8 * 64, 512) + dense(512, 10)),
    # The published 'without dropout' notebook: no second pool, so 16x16x64 into fc512.
    ("conv32-pool-conv64-conv64-fc512",
     conv(3, 3, 32) + conv(3, 32, 64) + conv(3, 64, 64) + dense(16 * 16 * 64, 512) + dense(512, 10)),
])
def test_parameter_counts_of_the_tutorial_networks(net, expected):
  assert _count(_params(net)) == expected


def test_tflearn_init_statistics():
  flat = _params("conv32-pool-conv64-conv64-pool-fc512", seed=1)
  for path, v in flat.items():
    v = np.asarray(v)
    if path[-1] == "bias":
      assert np.all(v == 0), path  # TFLearn: bias_init='zeros'
    elif path[0].startswith("conv"):
      # uniform_scaling: U(+-sqrt(3/fan_in)), std sqrt(1/fan_in).
      fan_in = int(np.prod(v.shape[:-1]))
      bound = np.sqrt(3.0 / fan_in)
      assert np.abs(v).max() <= bound, path
      assert np.abs(v).max() > 0.95 * bound, path  # it does reach the bound: uniform
      assert v.std() == pytest.approx(np.sqrt(1.0 / fan_in), rel=0.1), path
      assert abs(v.mean()) < 0.1 * bound, path
    else:
      # truncated_normal(stddev=0.02): within 2 std, and the truncated std 0.02 * 0.88.
      assert np.abs(v).max() <= 0.04 + 1e-7, path
      assert v.std() == pytest.approx(0.02 * 0.8796, rel=0.1), path


def test_or_neuron_init_is_tflearn_truncated_normal():
  ws = [np.asarray(Perceptron().init(jax.random.PRNGKey(s), jnp.zeros((1, 2)))["params"]["head"]
                   ["kernel"]) for s in range(200)]
  w = np.concatenate([x.ravel() for x in ws])
  assert np.abs(w).max() <= 0.04 + 1e-7
  assert w.std() == pytest.approx(0.02 * 0.8796, rel=0.15)


def test_lecun_init_is_the_option():
  flat = _params("conv32-pool-fc512", init="lecun", seed=1)
  head = np.asarray(flat["head", "kernel"])
  # lecun_normal: truncated normal with std 1/sqrt(fan_in) = 1/sqrt(512), far above 0.02.
  assert head.std() == pytest.approx(1 / np.sqrt(512), rel=0.1)
  fc = np.asarray(flat["fc0", "kernel"])
  assert fc.std() == pytest.approx(1 / np.sqrt(16 * 16 * 32), rel=0.1)


def test_max_pool_2x2_matches_flax():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 6, 4))  # odd height: cropped like VALID
  np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), (2, 2)))


CONVS = {  # (kernel, window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count)
    "same 3x3": ((3, 3, 4, 6), (1, 1), "SAME", None, None, 1),
    "same 2x2 (even: more padding after)": ((2, 2, 4, 6), (1, 1), "SAME", None, None, 1),
    "same 4x2": ((4, 2, 4, 6), (1, 1), "SAME", None, None, 1),
    "valid 3x3": ((3, 3, 4, 6), (1, 1), "VALID", None, None, 1),
    "explicit padding": ((3, 3, 4, 6), (1, 1), ((2, 0), (1, 3)), None, None, 1),
    "strided (lax)": ((3, 3, 4, 6), (2, 1), "SAME", None, None, 1),
    "input-dilated (lax)": ((3, 3, 4, 6), (1, 1), ((1, 1), (1, 1)), (2, 1), None, 1),
    "kernel-dilated (lax)": ((3, 3, 4, 6), (1, 1), "SAME", None, (1, 2), 1),
    "grouped (lax)": ((3, 3, 2, 6), (1, 1), "SAME", None, None, 2),
}


@pytest.mark.parametrize("case", CONVS)
def test_im2col_conv_is_laxs_conv_for_every_padding_and_falls_back_for_the_rest(case):
  kernel, strides, padding, lhs_d, rhs_d, groups = CONVS[case]
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6, 4))
  k = jax.random.normal(jax.random.PRNGKey(1), kernel)
  args = (strides, padding, lhs_d, rhs_d, ("NHWC", "HWIO", "NHWC"), groups)
  want = jax.lax.conv_general_dilated(x, k, *args, precision="highest")
  got = im2col_conv(x, k, *args, precision="highest")
  assert got.shape == want.shape
  # The point of im2col is to avoid XLA's conv: plain cases must not fall back to it.
  jaxpr = str(jax.make_jaxpr(lambda a, b: im2col_conv(a, b, *args))(x, k))
  assert ("conv_general_dilated" in jaxpr) == case.endswith("(lax)"), jaxpr
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dropout_zeroes_a_rate_of_units_and_scales_the_rest_to_keep_the_mean():
  x = jnp.full((200_000,), 2.0)
  for rate in (0.0, 0.25, 0.5):
    y = np.asarray(dropout(jax.random.PRNGKey(0), x, jnp.float32(rate)))
    dropped = (y == 0).mean()
    assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / x.size) + 1e-9
    np.testing.assert_allclose(y[y != 0], 2.0 / (1 - rate), rtol=1e-6)


def test_the_or_neuron_is_one_sigmoid_unit():
  model = Perceptron()
  v = model.init(jax.random.PRNGKey(0), jnp.zeros((4, 2)))
  y = model.apply(v, jnp.asarray([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32))
  assert y.shape == (4, 1) and bool(((y > 0) & (y < 1)).all())
  assert jax.tree.map(jnp.shape, v["params"]) == {"head": {"kernel": (2, 1), "bias": (1,)}}


@pytest.mark.parametrize("net,spec", [
    ("perceptron", NetSpec((), ())),
    ("fc64", NetSpec((), (64,))),
    ("conv32-pool-fc512", NetSpec(((32,),), (512,))),
    ("conv32-pool-conv64-conv64-pool-fc512", NetSpec(((32,), (64, 64)), (512,))),
    ("conv32-pool-conv64-conv64-fc512", NetSpec(((32,), (64, 64)), (512,), pool_last=False)),
    ("conv8-pool", NetSpec(((8,),), ())),
])
def test_parse_net(net, spec):
  assert parse_net(net) == spec


@pytest.mark.parametrize("net", ["", "conv32", "pool", "fc10-conv3-pool", "conv32-fc10-pool",
                                 "conv0-pool", "conv32-pool-conv64", "dense10", "conv32-conv64-fc5-pool"])
def test_parse_net_rejects(net):
  with pytest.raises(ValueError):
    parse_net(net)


def test_unpooled_last_set_keeps_resolution():
  model = ConvNet(layer_sets=((4,), (8,)), fc=(), num_classes=2, pool_last=False, im2col=True)
  out, variables = model.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
  assert out.shape == (1, 2)
  assert variables["params"]["head"]["kernel"].shape == (4 * 4 * 8, 2)  # one pool, not two


def test_batchnorm_trains_on_the_batch_and_evaluates_on_running_averages():
  from dl101_jax.core import member_state, train
  from dl101_jax.core.optim import make_optimizer

  model = make_model(Config(net="conv4-pool-fc8", batch_norm=True), 3, platform="cpu")
  hp = {"seed": 0, "learning_rate": 0.1, "weight_decay": 0.0, "dropout": 0.0, "l2": 0.0}
  s0 = member_state.init_state(model, make_optimizer("sgd"), jnp.zeros((1, 6, 6, 2)), hp)
  assert "bias" not in s0.params["conv0_0"]  # BatchNorm's shift replaces the conv bias
  stats = s0.batch_stats["bn0_0"]
  np.testing.assert_array_equal(stats["mean"], 0.0)
  np.testing.assert_array_equal(stats["var"], 1.0)
  x = jax.random.normal(jax.random.PRNGKey(1), (16, 6, 6, 2)) * 3.0 + 2.0
  y = jnp.arange(16) % 3
  # Training mode normalizes with the batch's own statistics: the conv output the BN sees.
  conv = lambda v: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"],
                               train=False)[1]["intermediates"]["conv0_0"]["__call__"][0]
  h = conv(member_state.model_variables(s0))
  s1, _ = jax.jit(train.make_train_step("xent"))(s0, {"x": x, "y": y}, jax.random.PRNGKey(2))
  # The running averages moved 10% of the way to the batch's mean and variance (Flax's is
  # the biased one, over batch, height and width).
  np.testing.assert_allclose(s1.batch_stats["bn0_0"]["mean"], 0.1 * h.mean((0, 1, 2)),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(s1.batch_stats["bn0_0"]["var"], 0.9 + 0.1 * h.var((0, 1, 2)),
                             rtol=1e-4)
  # Evaluation is deterministic and uses those averages: with fresh statistics (mean 0,
  # var 1) the same params give other outputs than with the trained ones.
  v1 = member_state.model_variables(s1)
  e1 = model.apply(v1, x, train=False)
  e0 = model.apply({**v1, "batch_stats": s0.batch_stats}, x, train=False)
  np.testing.assert_array_equal(e1, model.apply(v1, x, train=False))
  assert not np.allclose(e0, e1)
  # Training mode ignores the running averages: they change nothing in its outputs.
  t1, _ = model.apply(v1, x, train=True, mutable=["batch_stats"])
  t0, _ = model.apply({**v1, "batch_stats": s0.batch_stats}, x, train=True,
                      mutable=["batch_stats"])
  np.testing.assert_array_equal(t0, t1)
  assert not np.allclose(t1, e1)


def test_whitening_kernel_decorrelates_patches():
  from dl101_jax.core.models import whitening_kernel

  rng = np.random.default_rng(0)
  # Correlated channels and neighbouring pixels, as in images.
  base = rng.normal(size=(64, 9, 9, 1))
  x = np.concatenate([base, 0.5 * base + 0.1 * rng.normal(size=base.shape),
                      np.roll(base, 1, axis=2) + 0.1 * rng.normal(size=base.shape)], axis=-1)
  k = whitening_kernel(x, size=2, eps=0.0)
  assert k.shape == (2, 2, 3, 24)
  np.testing.assert_array_equal(k[..., 12:], -k[..., :12])  # the negatives, for the GELU
  out = jax.lax.conv_general_dilated(jnp.asarray(x, jnp.float32), jnp.asarray(k[..., :12]),
                                     (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  flat = np.asarray(out, np.float64).reshape(-1, 12)
  np.testing.assert_allclose(flat.T @ flat / len(flat), np.eye(12), atol=2e-3)


def test_airbench_net_shape_and_parameters():
  import flax.linen as nn

  from dl101_jax.core.models import AirbenchNet, _nested_tuple, partial_dirac

  whiten = np.zeros((2, 2, 3, 24), np.float32)
  net = make_model(Config(dataset="cifar10", net="airbench"), 10, platform="cpu", whiten=whiten)
  assert isinstance(net, AirbenchNet) and net.widths == (64, 256, 256)
  out, variables = net.init_with_output(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)))
  assert out.shape == (2, 10)
  count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))
  assert count == 1_971_352  # airbench94's: the frozen whitening kernel is not a parameter
  assert "bias" not in variables["params"]["block0_conv0"]
  assert "scale" not in variables["params"]["block0_norm0"]  # BatchNorm without scale
  assert net.whiten == _nested_tuple(whiten)
  from dl101_jax.host.evaluation import layer_table

  rows, total = layer_table(net, jnp.zeros((1, 32, 32, 3)))
  assert total == 1_971_352 and "| whiten_bias | 31x31x24 | 24 |" in rows
  assert "| block2_conv1 | 3x3x256 | 589,824 |" in rows
  # airbench's inits: each conv's first C_in filters pass the input through (dirac_), the
  # rest and the head are PyTorch's default, uniform in +-1/sqrt(fan_in).
  p = variables["params"]
  k = np.asarray(p["block1_conv0"]["kernel"])  # 3x3, 64 -> 256
  np.testing.assert_array_equal(k[:, :, :, :64].sum(axis=(0, 1)), np.eye(64))
  np.testing.assert_array_equal(k[1, 1, :, :64], np.eye(64))
  rest, bound = k[..., 64:], 1 / np.sqrt(3 * 3 * 64)
  assert np.abs(rest).max() <= bound and np.abs(rest).max() > 0.95 * bound
  np.testing.assert_allclose(rest.std(), bound / np.sqrt(3), rtol=0.02)
  head = np.asarray(p["head"]["kernel"])
  assert np.abs(head).max() <= 1 / 16 and head.std() > 0.9 / 16 / np.sqrt(3)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 64))
  y = nn.Conv(80, (3, 3), padding="SAME", use_bias=False,
              kernel_init=partial_dirac(nn.initializers.zeros)).init_with_output(
                  jax.random.PRNGKey(0), x)[0]
  np.testing.assert_array_equal(y[..., :64], x)
  np.testing.assert_array_equal(y[..., 64:], 0)
  with pytest.raises(ValueError, match="whitening"):
    make_model(Config(dataset="cifar10", net="airbench"), 10, platform="cpu")
  from dl101_jax.config import ConfigError

  with pytest.raises(ConfigError, match="--net"):
    Config(dataset="digits", net="airbench")
