"""Networks: TFLearn's initializers, parameter counts, the pool, and `--net` parsing."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dl101_jax.config import Config
from dl101_jax.net_spec import NetSpec, parse_net
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
    "unit dilations given, as Flax's Conv does": ((3, 3, 4, 6), (1, 1), "SAME", (1, 1), (1, 1), 1),
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
  hp = {"seed": 0, "learning_rate": 0.1, "weight_decay": 0.0, "dropout": 0.0, "l2": 0.0, "l1": 0.0}
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


# --- The airbench net written out, and the modules' settings --------------------------------

def _gelu(x):  # exact GELU, as airbench's nn.GELU()
  return 0.5 * x * (1.0 + jax.scipy.special.erf(x / np.sqrt(2.0)))


def _conv_same(x, k):
  return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=jax.lax.Precision.HIGHEST)


def _airbench_reference(p, stats, x, whiten, widths, muon_head):
  """airbench94's forward in evaluation mode, from its definition (BatchNorm: running
  statistics, eps 1e-12, no scale, a trained shift)."""
  x = jax.lax.conv_general_dilated(x, whiten, (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   precision=jax.lax.Precision.HIGHEST)
  x = _gelu(x + p["whiten_bias"].reshape(1, 1, 1, -1))
  c = lambda a: a.reshape(1, 1, 1, -1)
  bn = lambda x, name: (x - c(stats[name]["mean"])) / jnp.sqrt(c(stats[name]["var"]) + 1e-12) \
      + c(p[name]["bias"])
  for i, _ in enumerate(widths):
    x = _conv_same(x, p[f"block{i}_conv0"]["kernel"])
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    x = _gelu(bn(x, f"block{i}_norm0"))
    x = _gelu(bn(_conv_same(x, p[f"block{i}_conv1"]["kernel"]), f"block{i}_norm1"))
  x = x.max(axis=(1, 2))
  return x @ p["head"]["kernel"] / (widths[-1] if muon_head else 9.0)


@pytest.mark.parametrize("muon_head", [False, True])
def test_airbench_net_is_airbench94s_forward_written_out(muon_head):
  from dl101_jax.core.models import AirbenchNet, _nested_tuple

  rng = np.random.default_rng(0)
  widths = (4, 6, 5)  # distinct, so that a width taken from the wrong end shows
  whiten = rng.normal(size=(2, 2, 3, 24)).astype(np.float32)
  net = AirbenchNet(whiten=_nested_tuple(whiten), num_classes=3, widths=widths,
                    muon_head=muon_head)
  x = jnp.asarray(rng.normal(size=(2, 16, 16, 3)), jnp.float32)
  v = net.init(jax.random.PRNGKey(0), x)
  assert set(v["params"]) == {"whiten_bias", "head"} | {
      f"block{i}_{kind}" for i in range(3) for kind in ("conv0", "norm0", "conv1", "norm1")}
  # Nonzero biases and statistics, so that each term is seen.
  leaves = lambda t: jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), t)
  p = leaves(v["params"])
  stats = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 2.0, a.shape), jnp.float32),
                       v["batch_stats"])
  got = net.apply({"params": p, "batch_stats": stats}, x)
  want = _airbench_reference(p, stats, x, jnp.asarray(whiten), widths, muon_head)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)


def test_every_gelu_of_the_airbench_net_is_the_exact_one(monkeypatch):
  # The tanh approximation differs by < 1e-3, which a forward pass through BatchNorm and
  # max-pools does not resolve; so the calls are watched (airbench's nn.GELU() is exact).
  from dl101_jax.core.models import AirbenchNet, _nested_tuple

  calls = []
  real = nn.gelu
  monkeypatch.setattr(nn, "gelu", lambda x, approximate=True: (
      calls.append(approximate), real(x, approximate=approximate))[1])
  whiten = _nested_tuple(np.zeros((2, 2, 3, 24), np.float32))
  AirbenchNet(whiten=whiten, num_classes=3, widths=(4, 4, 4)).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))
  assert calls == [False] * 7  # after the whitening conv, and two per block


def _batchnorms(model, x, **kw):
  """(momentum, epsilon, use_scale) of every BatchNorm the model calls."""
  seen = []

  def record(f, args, kwargs, context):
    if isinstance(context.module, nn.BatchNorm):
      m = context.module
      seen.append((m.momentum, m.epsilon, m.use_scale))
    return f(*args, **kwargs)

  with nn.intercept_methods(record):
    model.init(jax.random.PRNGKey(0), x, **kw)
  return set(seen)


def test_batchnorm_settings_are_pytorchs_for_convnet_and_airbenchs_for_its_net():
  from dl101_jax.core.models import AirbenchNet, _nested_tuple

  conv = ConvNet(layer_sets=((4,),), fc=(), num_classes=3, batch_norm=True)
  assert _batchnorms(conv, jnp.zeros((1, 8, 8, 3))) == {(0.9, 1e-5, True)}
  whiten = _nested_tuple(np.zeros((2, 2, 3, 24), np.float32))
  air = AirbenchNet(whiten=whiten, num_classes=3, widths=(4, 4, 4))
  assert _batchnorms(air, jnp.zeros((1, 16, 16, 3))) == {(0.6, 1e-12, False)}


def test_airbench_running_statistics_keep_six_tenths_of_the_old():
  from dl101_jax.core.models import AirbenchNet, _nested_tuple

  rng = np.random.default_rng(1)
  whiten = rng.normal(size=(2, 2, 3, 24)).astype(np.float32)
  net = AirbenchNet(whiten=_nested_tuple(whiten), num_classes=3, widths=(4, 4, 4))
  x = jnp.asarray(rng.normal(size=(4, 16, 16, 3)), jnp.float32)
  v = net.init(jax.random.PRNGKey(0), x)
  _, upd = net.apply(v, x, train=True, mutable=["batch_stats"])
  # block0_norm0 sees pool(conv0(gelu(whiten(x)))): its batch mean and (biased) variance
  h = jax.lax.conv_general_dilated(x, jnp.asarray(whiten), (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   precision=jax.lax.Precision.HIGHEST)
  h = _conv_same(_gelu(h), v["params"]["block0_conv0"]["kernel"])
  h = np.asarray(jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                       "VALID")).reshape(-1, 4)
  got = upd["batch_stats"]["block0_norm0"]
  np.testing.assert_allclose(got["mean"], 0.6 * 0.0 + 0.4 * h.mean(0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got["var"], 0.6 * 1.0 + 0.4 * h.var(0), rtol=1e-4)


def test_the_modules_defaults_are_the_tutorials_plain_network():
  from dl101_jax.core.models import AirbenchNet

  c = ConvNet(layer_sets=((4,),), fc=(), num_classes=3)
  assert (c.dropout, c.im2col, c.batch_norm, c.pool_last, c.dtype) == (
      False, False, False, True, jnp.float32)
  assert all(type(f) is bool for f in (c.dropout, c.im2col, c.batch_norm))
  a = AirbenchNet(whiten=(), num_classes=3)
  assert (a.im2col, a.muon_head, a.dtype, tuple(a.widths)) == (False, False, jnp.float32,
                                                                 (64, 256, 256))
  assert type(a.im2col) is bool and type(a.muon_head) is bool


def test_dropout_without_a_rate_given_drops_nothing():
  model = ConvNet(layer_sets=((4,),), fc=(8,), num_classes=3, dropout=True)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  v = model.init(jax.random.PRNGKey(1), x)
  trained = model.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  np.testing.assert_allclose(trained, model.apply(v, x), rtol=1e-6)


@pytest.mark.parametrize("k", [3, 5])
def test_partial_dirac_is_the_identity_at_the_kernels_centre(k):
  from dl101_jax.core.models import partial_dirac

  w = partial_dirac(nn.initializers.zeros)(jax.random.PRNGKey(0), (k, k, 2, 3))
  want = np.zeros((k, k, 2, 3), np.float32)
  want[k // 2, k // 2, 0, 0] = want[k // 2, k // 2, 1, 1] = 1.0
  np.testing.assert_array_equal(w, want)


def test_im2col_conv_with_default_arguments_is_laxs_conv():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 3))
  k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
  want = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = im2col_conv(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_whitening_kernel_defaults_and_the_order_of_its_filters():
  from dl101_jax.core.models import whitening_kernel

  rng = np.random.default_rng(2)
  base = rng.normal(size=(32, 6, 6, 1))
  x = np.concatenate([base, 0.3 * base + 0.2 * rng.normal(size=base.shape)], axis=-1)
  k = whitening_kernel(x)  # 2x2, eps 5e-4
  assert k.shape == (2, 2, 2, 16)
  patches = np.stack([x[:, i:5 + i, j:5 + j, :] for i in range(2) for j in range(2)], axis=3)
  flat = patches.reshape(-1, 8)
  lam = np.sort(np.linalg.eigvalsh(flat.T @ flat / len(flat)))[::-1]  # largest first
  out = flat @ k[..., :8].reshape(8, 8)
  np.testing.assert_allclose(np.diag(out.T @ out / len(out)), lam / (lam + 5e-4), rtol=1e-4)


def test_make_model_picks_the_conv_the_dtype_the_head_and_the_dropout_layer():
  from dl101_jax.core.models import AirbenchNet

  cfg = Config(net="conv4-pool-fc8", dropout=0.5)
  assert make_model(cfg, 3, platform="cpu").im2col is True
  assert make_model(cfg, 3, platform="gpu").im2col is False
  assert make_model(cfg, 3).im2col is (jax.default_backend() == "cpu")
  assert make_model(cfg, 3).dtype == jnp.float32
  assert make_model(Config(net="conv4-pool-fc8", precision="bf16"), 3).dtype == jnp.bfloat16
  assert make_model(cfg, 3).dropout is True
  assert make_model(cfg, 3, dropout=False).dropout is False
  assert make_model(Config(net="conv4-pool-fc8", dropout=0.3), 3, dropout=None).dropout is True
  whiten = np.zeros((2, 2, 3, 24), np.float32)
  for net, muon_head in (("airbench", False), ("airbench_muon", True)):
    m = make_model(Config(dataset="cifar10", net=net), 10, whiten=whiten)
    assert isinstance(m, AirbenchNet) and m.muon_head is muon_head
  with pytest.raises(ValueError, match=r"^the airbench net needs its whitening kernel "
                                       r"\(models.whitening_kernel\)$"):
    make_model(Config(dataset="cifar10", net="airbench"), 10)
