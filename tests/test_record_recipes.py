"""The rungs after airbench94: airbench94_muon's optimizer and airbench96's cutout.

Each is checked against its rule written out here in numpy, then trained on digits.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from dl101_jax.core import augment, train
from dl101_jax.config import Config, ConfigError
from dl101_jax.core.optim import init_opt_state, make_optimizer

NS_ABC = (3.4445, -4.7750, 2.0315)  # airbench94_muon's quintic Newton-Schulz coefficients


def newton_schulz(g_2d: np.ndarray, steps: int = 3, eps: float = 1e-7) -> np.ndarray:
  """airbench94_muon's zeropower_via_newtonschulz5, in float64 (it runs bf16 there)."""
  a, b, c = NS_ABC
  x = g_2d / (np.linalg.norm(g_2d) + eps)
  tall = x.shape[0] > x.shape[1]
  x = x.T if tall else x
  for _ in range(steps):
    m = x @ x.T
    x = a * x + (b * m + c * m @ m) @ x
  return x.T if tall else x


def test_muon_steps_are_airbench94_muons_rule_written_out():
  """Three steps on a conv filter, a head and a BatchNorm shift: the filter takes Muon's step
  (torch-style Nesterov momentum 0.6; the filter rescaled to norm sqrt(out); the update
  orthogonalized; lr x the linear schedule), the others Nesterov SGD with the decay added to
  the gradient, the shift at norm_bias_lr x."""
  key = jax.random.PRNGKey(0)
  p = {"block0_conv0": {"kernel": jax.random.normal(key, (3, 3, 4, 6))},
       "block0_norm0": {"bias": jnp.full((6,), 0.5)},
       "head": {"kernel": jax.random.normal(jax.random.fold_in(key, 1), (6, 3))}}
  lr, wd, muon_lr, m, bias_x, total = 0.3, 0.01, 0.24, 0.85, 0.25, 10
  tx = make_optimizer("muon", "linear", total, momentum=m, norm_bias_lr=bias_x)
  state = init_opt_state(tx, p, learning_rate=lr, weight_decay=wd, muon_lr=muon_lr)
  want = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  buf = jax.tree.map(np.zeros_like, want)
  for t in range(3):
    g = jax.tree.map(lambda a: np.asarray(jax.random.normal(jax.random.fold_in(key, 10 + t),
                                                             a.shape), np.float64), p)
    factor = 1 - t / total
    # The filter: airbench94_muon's Muon.step.
    w, gk = want["block0_conv0"]["kernel"], g["block0_conv0"]["kernel"]
    b = buf["block0_conv0"]["kernel"] = 0.6 * buf["block0_conv0"]["kernel"] + gk
    nesterov = gk + 0.6 * b
    w = w * np.sqrt(6) / np.linalg.norm(w)
    update = newton_schulz(nesterov.reshape(-1, 6))  # (fan_in, out): any flattening order
    want["block0_conv0"]["kernel"] = w - muon_lr * factor * update.reshape(w.shape)
    # The rest: PyTorch's SGD(momentum, nesterov, weight_decay) per group.
    for path, scale in ((("block0_norm0", "bias"), bias_x), (("head", "kernel"), 1.0)):
      w, gk = want[path[0]][path[1]], g[path[0]][path[1]]
      d = scale * gk + wd * w
      b = buf[path[0]][path[1]] = m * buf[path[0]][path[1]] + d
      want[path[0]][path[1]] = w - lr * factor * (d + m * b)
    u, state = tx.update(jax.tree.map(jnp.asarray, g), state, p)
    p = jax.tree.map(lambda a, b: a + b, p, u)
    for path in (("block0_conv0", "kernel"), ("block0_norm0", "bias"), ("head", "kernel")):
      np.testing.assert_allclose(p[path[0]][path[1]], want[path[0]][path[1]], rtol=2e-4,
                                 atol=2e-5, err_msg=f"step {t}: {'/'.join(path)}")
  # The orthogonalized update: singular values in Newton-Schulz's band (about 0.5 to 1.5).
  sv = np.linalg.svd(newton_schulz(np.asarray(g["block0_conv0"]["kernel"]).reshape(-1, 6)),
                     compute_uv=False)
  assert 0.4 < sv.min() and sv.max() < 1.6


def test_muon_whitening_bias_falls_to_zero_then_freezes():
  p = {"whiten_bias": jnp.ones(2), "head": {"kernel": jnp.ones((2, 2))}}
  tx = make_optimizer("muon", "linear", 100, momentum=0.0, norm_bias_lr=0.5, whiten_bias_steps=4)
  state = init_opt_state(tx, p, learning_rate=0.1, weight_decay=0.0, muon_lr=0.24)
  g = jax.tree.map(jnp.ones_like, p)
  got = []
  for _ in range(6):
    u, state = tx.update(g, state, p)
    got.append(float(u["whiten_bias"][0]))
  np.testing.assert_allclose(got, [-0.05 * (1 - t / 4) if t < 4 else 0.0 for t in range(6)],
                             rtol=1e-6, atol=1e-8)


def test_muon_lr_is_a_per_member_value():
  """--muon-lr lives in the optimizer's state (vmapped members may differ) and is refused
  without --optimizer muon."""
  assert Config(optimizer="muon", muon_lr=0.1).muon_lr == 0.1
  with pytest.raises(ConfigError, match="--muon-lr"):
    Config(muon_lr=0.1)
  with pytest.raises(ConfigError, match="--muon-lr"):
    Config(optimizer="muon", muon_lr=0.0)
  p = {"c": {"kernel": jnp.ones((3, 3, 2, 2))}}
  tx = make_optimizer("muon")
  s = jax.vmap(lambda lr: init_opt_state(tx, p, learning_rate=0.1, weight_decay=0.0,
                                         muon_lr=lr))(jnp.asarray([0.1, 0.2]))
  np.testing.assert_allclose(s.hyperparams["muon_lr"], [0.1, 0.2])
  # A member's fresh state carries its own --muon-lr, as it does its learning rate.
  from dl101_jax.core import member_state
  from dl101_jax.core.models import ConvNet

  hp = {"seed": 0, "learning_rate": 0.1, "weight_decay": 0.0, "dropout": 0.0, "l2": 0.0, "l1": 0.0}
  net = ConvNet(layer_sets=((2,),), fc=(), num_classes=2, im2col=True)
  for lr in (0.05, 0.3):
    s0 = member_state.init_state(net, tx, jnp.zeros((1, 4, 4, 1)), {**hp, "muon_lr": lr})
    np.testing.assert_allclose(s0.opt_state.hyperparams["muon_lr"], lr)


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 6), h=st.integers(6, 9), w=st.integers(6, 9), seed=st.integers(0, 999))
def test_cutout_sets_one_inner_square_to_the_fill_and_leaves_the_rest(size, h, w, seed):
  x = 1.0 + jax.random.uniform(jax.random.PRNGKey(seed), (5, h, w, 3))  # no pixel is 0
  y = np.asarray(augment.cutout(jax.random.PRNGKey(seed + 1), x, size))
  for i in range(5):
    cut = (y[i] == 0.0).all(axis=-1)
    rows, cols = np.nonzero(cut)
    assert cut.sum() == size * size  # one whole square, inside the image
    assert rows.max() - rows.min() == size - 1 and cols.max() - cols.min() == size - 1
    np.testing.assert_array_equal(y[i][~cut], np.asarray(x[i])[~cut])  # the rest untouched


def test_cutout_corners_cover_their_range_uniformly():
  """Every corner from 0 to side - size is drawn, evenly: a chi-square test over 4,000 draws
  at a 1e-4 false-failure rate (a corner range off by one, or one-sided, fails it)."""
  size, side, n = 3, 8, 4000
  x = jnp.ones((n, side, side, 1))
  cut = np.asarray(augment.cutout(jax.random.PRNGKey(0), x, size))[..., 0] == 0.0
  top = cut.any(axis=2).argmax(axis=1)
  left = cut.any(axis=1).argmax(axis=1)
  for corners in (top, left):
    counts = np.bincount(corners, minlength=side - size + 1)
    assert len(counts) == side - size + 1 and counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-4


def test_cutout_is_applied_to_normalized_training_inputs_only():
  """The square is the mean colour: 0 after normalization, whether augmentation ran on raw
  pixels first (TFLearn's order) or not; evaluation never cuts."""
  key = jax.random.PRNGKey(3)
  x = jax.random.randint(key, (4, 8, 8, 3), 1, 255).astype(jnp.float32)
  norm = lambda v: (v - 100.5) / 50.0  # no pixel maps to 0
  got = np.asarray(train.training_inputs(key, x, flip=False, rotate=0.0, normalize=norm,
                                         cutout=4))
  assert ((got == 0.0).all(axis=-1).sum(axis=(1, 2)) == 16).all()
  assert (np.asarray(norm(x)) != 0).all()


def test_muon_and_cutout_train_the_tutorial_net_on_digits(tmp_path):
  """Both pieces run end to end in the engine (any conv net; the rungs use airbench's) and
  learn: well above chance after 3 epochs."""
  from dl101_jax.host.experiment import run_experiment

  c = Config(name="m", dataset="digits", net="conv16-pool-fc64", optimizer="muon",
             momentum=0.85, learning_rate=0.1, muon_lr=0.05, weight_decay=1e-4,
             schedule="linear", cutout=3, epochs=3, checkpoint_every=0, workdir=str(tmp_path))
  r = run_experiment(c, {"muon_cutout": {}}, plot=False)
  assert r.json["variants"][0]["final"]["val_accuracy"] > 0.5  # chance is 0.1


def test_the_new_rungs_are_opt_in_and_valid():
  from experiments import modern

  assert "muon" not in modern.VARIANTS and "cutout" not in modern.VARIANTS
  diff = lambda a, b: sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
  assert diff(modern.AIRBENCH94, modern.CUTOUT) == ["cutout"]
  assert diff(modern.AIRBENCH94, modern.MUON) == [
      "batch_size", "epochs", "learning_rate", "lookahead", "muon_lr", "net",
      "norm_bias_lr", "optimizer", "schedule", "weight_decay"]
  for name in modern.AFTER:
    dataclasses.replace(modern.CONFIG, **modern.OPT_IN[name])
  # airbench94_muon's units: lr x decay is 2e-6 x batch per step on every SGD group.
  np.testing.assert_allclose(modern.MUON["learning_rate"] * modern.MUON["weight_decay"], 0.004)
  np.testing.assert_allclose(modern.MUON["learning_rate"] * modern.MUON["norm_bias_lr"] / 2000,
                             0.053)


def test_new_rungs_are_compared_with_the_full_recipe():
  from experiments import modern

  rows = modern.compare_rungs([
      {"rung": "airbench_net", "val_accuracy_per_seed": [0.60, 0.61], "seconds": 1.0},
      {"rung": "+ lookahead", "val_accuracy_per_seed": [0.62, 0.63], "seconds": 1.0},
      {"rung": "+ tta", "val_accuracy_per_seed": [0.70, 0.71], "seconds": 0.0},
      {"rung": "muon", "val_accuracy_per_seed": [0.80, 0.81], "seconds": 1.0, "epochs": 8,
       "baseline": "+ tta", "vs": "airbench94 at 10 epochs"},
      {"rung": "cutout", "val_accuracy_per_seed": [0.60, 0.61], "seconds": 1.0, "epochs": 10,
       "baseline": "+ tta"}])
  np.testing.assert_allclose([rows[3]["gain"], rows[4]["gain"]], [0.10, -0.10])
  assert [rows[3]["verdict"], rows[4]["verdict"]] == ["supported", "contradicted"]
  table = modern.ladder_table(rows)
  assert "| muon (8 epochs) vs airbench94 at 10 epochs |" in table


def test_the_muon_head():
  from dl101_jax.core.models import AirbenchNet

  whiten = np.zeros((2, 2, 3, 24), np.float32)
  x = jnp.ones((2, 32, 32, 3))
  nets = [AirbenchNet(whiten=tuple(map(tuple, whiten.tolist())), num_classes=10, muon_head=m)
          for m in (False, True)]
  v = [n.init(jax.random.PRNGKey(0), x) for n in nets]
  count = lambda t: sum(a.size for a in jax.tree.leaves(t["params"]))
  assert count(v[0]) == count(v[1])  # the same net, another head init and scale
  np.testing.assert_allclose(np.std(np.asarray(v[1]["params"]["head"]["kernel"])), 1.0, rtol=1e-5)
  # Same weights, both heads: the outputs differ by the scale alone (1/256 against 1/9).
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  np.testing.assert_allclose(nets[1].apply(v[1], x) * 256, nets[0].apply(v[1], x) * 9,
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dataset, side", [("digits", 8), ("cifar10", 32)])
def test_cutout_bounds_at_their_edges(dataset, side):
  net = {"net": "conv8-pool-fc16"}
  assert Config(dataset=dataset, cutout=side, **net).cutout == side
  for bad in (side + 1, -1):
    with pytest.raises(ConfigError, match="--cutout"):
      Config(dataset=dataset, cutout=bad, **net)
  with pytest.raises(ConfigError, match="--cutout"):
    Config(dataset="or", net="perceptron", cutout=1)
