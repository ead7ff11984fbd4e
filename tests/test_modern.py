"""The pieces past the tutorial: translation, label smoothing, Nesterov SGD and the schedule."""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util
from hypothesis import given, settings, strategies as st

from dl101_jax.core import augment, losses, member_state, train
from dl101_jax.config import Config, ConfigError
from dl101_jax.core.optim import init_opt_state, make_optimizer, schedule_factor


@settings(max_examples=30, deadline=None)
@given(dy=st.integers(-2, 2), dx=st.integers(-2, 2), r=st.integers(3, 4), c=st.integers(3, 4))
def test_translate_moves_every_pixel_by_the_shift(dy, dx, r, c):
  x = jnp.zeros((1, 8, 8, 1)).at[0, r, c, 0].set(1.0)
  y = np.asarray(augment.translate(x, jnp.asarray([dy]), jnp.asarray([dx]), 2))
  # Rows and columns 3-4 of 8 never come back through a 2-pixel reflection: the pixel moved,
  # and nothing else is lit.
  assert y[0, r + dy, c + dx, 0] == 1.0 and y.sum() == 1.0


def test_translate_fills_from_the_reflection_and_stays_in_bounds():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  y = np.asarray(augment.translate(x, jnp.asarray([1]), jnp.asarray([0]), 2))[0, :, :, 0]
  # Down by one: the new top row is the reflection of row 1 (reflect, not edge or zeros).
  np.testing.assert_array_equal(y[1:], np.asarray(x)[0, :3, :, 0])
  np.testing.assert_array_equal(y[0], np.asarray(x)[0, 1, :, 0])
  shifts = []
  for k in range(40):  # augment draws shifts within +-translate only
    img = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
    out = np.asarray(augment.augment(jax.random.PRNGKey(k), img, flip=False, max_degrees=0.0,
                                     max_shift=2))[0, :, :, 0]
    (r,), (c,) = np.nonzero(out)
    shifts.append((r - 4, c - 4))
  assert all(abs(a) <= 2 and abs(b) <= 2 for a, b in shifts) and len(set(shifts)) > 5


@settings(max_examples=10, deadline=None)
@given(a=st.floats(0.0, 0.5), seed=st.integers(0, 1000))
def test_label_smoothing_is_cross_entropy_against_smoothed_targets(a, seed):
  out = jax.random.normal(jax.random.PRNGKey(seed), (5, 4))
  y = jnp.arange(5) % 4
  got = losses.per_example_loss("xent", out, y, a)
  target = (1 - a) * np.eye(4)[np.asarray(y)] + a / 4
  want = -(target * np.asarray(jax.nn.log_softmax(out))).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  if a == 0:
    np.testing.assert_array_equal(got, optax.softmax_cross_entropy_with_integer_labels(out, y))


def _first_update(name, schedule="constant", total=100, lr=0.1, wd=0.01):
  p = {"fc": {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}}
  tx = make_optimizer(name, schedule, total)
  s = init_opt_state(tx, p, learning_rate=lr, weight_decay=wd)
  u, s = tx.update(jax.tree.map(jnp.ones_like, p), s, p)
  return u, s


def test_nesterov_is_pytorchs_sgd_with_weight_decay():
  u, s = _first_update("nesterov")
  # PyTorch: g' = g + wd w (kernels only here); buf = g'; step = g' + 0.9 buf.
  g_kernel, g_bias = 1 + 0.01 * 2.0, 1.0
  np.testing.assert_allclose(u["fc"]["kernel"], -0.1 * 1.9 * g_kernel, rtol=1e-6)
  np.testing.assert_allclose(u["fc"]["bias"], -0.1 * 1.9 * g_bias, rtol=1e-6)
  assert set(s.hyperparams) == {"learning_rate", "weight_decay"}  # per member, as for adamw


@pytest.mark.parametrize("name", ["sgd", "nesterov", "adamw"])
def test_the_schedule_scales_each_update_and_keeps_the_member_hyperparameters(name):
  f = schedule_factor("warmup_linear", 100)
  np.testing.assert_allclose([float(f(i)) for i in (0, 23, 100)], [0.2, 1.0, 0.07], rtol=1e-6)
  np.testing.assert_allclose(float(f(11)), 0.2 + 0.8 * 11 / 23, rtol=1e-5)
  plain, _ = _first_update(name)
  scaled, s = _first_update(name, "warmup_linear")
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(scaled)):
    np.testing.assert_allclose(b, 0.2 * a, rtol=1e-6)  # step 0: 0.2x
  assert float(s.hyperparams["learning_rate"]) == pytest.approx(0.1)


def test_the_new_flags_are_validated():
  for field, value, message in [("translate", 9, "[0, 8]"), ("label_smoothing", 1.0, "[0, 1)"),
                                ("schedule", "cosine", "constant, warmup_linear, linear")]:
    with pytest.raises(ConfigError, match=re.escape(message)):
      dataclasses.replace(Config(), **{field: value})
  with pytest.raises(ConfigError, match="--weight-decay"):
    Config(weight_decay=0.1, optimizer="adam")
  Config(weight_decay=5e-4, optimizer="nesterov", schedule="warmup_linear", translate=2,
         label_smoothing=0.2)


def test_ema_follows_the_params_and_is_what_evaluation_uses():
  from dl101_jax.core.models import ConvNet

  model = ConvNet(layer_sets=((4,),), fc=(8,), num_classes=3, im2col=True)
  hp = {"seed": 0, "learning_rate": 0.1, "weight_decay": 0.0, "dropout": 0.0, "l2": 0.0, "l1": 0.0}
  s0 = member_state.init_state(model, make_optimizer("sgd"), jnp.zeros((1, 6, 6, 1)), hp, ema=True)
  for a, b in zip(jax.tree.leaves(s0.eval_params), jax.tree.leaves(s0.params)):
    np.testing.assert_array_equal(a, b)  # the average starts at the params
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 6, 6, 1))
  batch = {"x": x, "y": jnp.arange(8) % 3}
  step = jax.jit(train.make_train_step("xent", ema=0.9))
  s1, _ = step(s0, batch, jax.random.PRNGKey(2))
  # Bias-corrected (optax.ema(debias=True)): after one step the average is that step's params.
  for e, p1 in zip(jax.tree.leaves(s1.eval_params), jax.tree.leaves(s1.params)):
    np.testing.assert_allclose(e, p1, rtol=1e-5, atol=1e-7)
  s2, _ = step(s1, batch, jax.random.PRNGKey(3))
  for e, p1, p2 in zip(*(jax.tree.leaves(t) for t in (s2.eval_params, s1.params, s2.params))):
    want = (0.9 * 0.1 * p1 + 0.1 * p2) / (1 - 0.9 ** 2)
    np.testing.assert_allclose(e, want, rtol=1e-5, atol=1e-7)
  assert not np.allclose(jax.tree.leaves(s2.eval_params)[0], jax.tree.leaves(s2.params)[0])
  s1 = s2
  ev = train.make_eval_step(model.apply, "xent")
  got = ev(member_state.model_variables(s1), batch)["loss"]
  assert float(got) == float(ev({"params": s1.eval_params}, batch)["loss"])
  assert float(got) != float(ev({"params": s1.params}, batch)["loss"])


def test_lookahead_is_airbenchs():
  """airbench94's LookaheadState.update, written out: after every 5th step t of T,
  slow += (1 - 0.95**5 * (t/T)**3) * (fast - slow), then fast = slow; for the weights
  and for BatchNorm's running statistics alike (airbench averages its buffers too)."""
  from dl101_jax.core.models import ConvNet

  model = ConvNet(layer_sets=((4,),), fc=(8,), num_classes=3, im2col=True, batch_norm=True)
  hp = {"seed": 0, "learning_rate": 0.3, "weight_decay": 0.0, "dropout": 0.0, "l2": 0.0, "l1": 0.0}
  tx = make_optimizer("nesterov", momentum=0.5)
  s = member_state.init_state(model, tx, jnp.zeros((1, 6, 6, 1)), hp, lookahead=5)
  plain = member_state.init_state(model, tx, jnp.zeros((1, 6, 6, 1)), hp)
  step = jax.jit(train.make_train_step("xent", lookahead=5, total_steps=12))
  fast = jax.jit(train.make_train_step("xent"))  # the same rule without lookahead
  leaves = lambda st: [np.asarray(a) for a in jax.tree.leaves((st.params, st.batch_stats))]
  slow = leaves(s)
  for t in range(1, 13):
    key = jax.random.PRNGKey(t)
    x = jax.random.normal(jax.random.PRNGKey(100 + t), (8, 6, 6, 1)) + t  # statistics move
    batch = {"x": x, "y": jnp.arange(8) % 3}
    plain = plain.replace(params=s.params, opt_state=s.opt_state, step=s.step,
                          batch_stats=s.batch_stats)
    want_fast = leaves(fast(plain, batch, key)[0])
    s, _ = step(s, batch, key)
    if t % 5 == 0:
      alpha = 1 - 0.95 ** 5 * (t / 12) ** 3
      slow = [w + alpha * (f - w) for w, f in zip(slow, want_fast)]
      want_fast = slow
    for got, want in zip(jax.tree.leaves((s.eval_params, s.eval_batch_stats)), slow):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(leaves(s), want_fast):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  for a, b in zip(leaves(s), slow):  # 2 fast steps since the sync: weights and statistics
    assert not np.allclose(a, b)
  ev = train.make_eval_step(model.apply, "xent")  # evaluation sees the slow weights and stats
  slow_vars = {"params": s.eval_params, "batch_stats": s.eval_batch_stats}
  assert float(ev(member_state.model_variables(s), batch)["loss"]) == float(
      ev(slow_vars, batch)["loss"])
  assert float(ev({**slow_vars, "batch_stats": s.batch_stats}, batch)["loss"]) != float(
      ev(slow_vars, batch)["loss"])
  with pytest.raises(ConfigError, match="--lookahead"):
    Config(lookahead=5, ema=0.99)


def test_tta_levels_are_airbenchs():
  w = jax.random.normal(jax.random.PRNGKey(0), (6 * 6 * 2, 3))
  apply = lambda x: x.reshape(x.shape[0], -1) @ w  # not mirror-symmetric
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 6, 2))
  mirror = lambda z: z[:, :, ::-1, :]
  np.testing.assert_array_equal(augment.tta_logits(apply, x, 0), apply(x))
  one = augment.tta_logits(apply, x, 1)
  np.testing.assert_allclose(one, 0.5 * (apply(x) + apply(mirror(x))), rtol=1e-6)
  np.testing.assert_allclose(augment.tta_logits(apply, mirror(x), 1), one, rtol=1e-5, atol=1e-6)
  up = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
  shifted = (up[:, 2:, 2:], up[:, :-2, :-2])  # up-left and down-right by one pixel
  want = 0.5 * one + sum(0.25 * 0.5 * (apply(s) + apply(mirror(s))) for s in shifted)
  np.testing.assert_allclose(augment.tta_logits(apply, x, 2), want, rtol=1e-5, atol=1e-5)


def test_each_rung_of_the_ladder_changes_one_thing():
  from experiments import modern

  rungs = [modern.OPT_IN[n] for n in modern.LADDER] + [modern.VARIANTS["airbench94"]]
  changed = [sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
             for a, b in zip([{}] + rungs, rungs)]
  assert changed[:5] == [["dropout"], ["batch_norm"],
                         ["learning_rate", "optimizer", "schedule", "weight_decay"],
                         ["label_smoothing"], ["alternate_flip", "rotate", "translate"]]
  # The airbench net with its own optimizer settings, then Lookahead + TTA (one run).
  assert set(changed[5]) == {"net", "dropout", "batch_norm", "batch_size", "learning_rate",
                             "momentum", "weight_decay", "norm_bias_lr", "whiten_bias_epochs"}
  assert changed[6] == ["lookahead", "tta"]
  for r in rungs:  # every rung is a valid run of the experiment's base config
    dataclasses.replace(modern.CONFIG, **r)
  assert list(modern.VARIANTS) == ["airbench94"]  # no flags: the full recipe


def test_airbench_parameter_groups():
  from dl101_jax.core.optim import norm_bias_mask, whiten_bias_mask

  p = {"whiten_bias": jnp.ones(2), "bn0_0": {"bias": jnp.ones(2), "scale": jnp.ones(2)},
       "block0_norm0": {"bias": jnp.ones(2)}, "conv0_0": {"kernel": jnp.ones((2, 2)),
                                                          "bias": jnp.ones(2)}}
  flat = lambda t: {"/".join(k): v for k, v in traverse_util.flatten_dict(t).items()}
  assert [k for k, v in flat(norm_bias_mask(p)).items() if v] == ["bn0_0/bias",
                                                                    "block0_norm0/bias"]
  assert [k for k, v in flat(whiten_bias_mask(p)).items() if v] == ["whiten_bias"]
  tx = make_optimizer("sgd", norm_bias_lr=64.0, whiten_bias_steps=2)
  s = init_opt_state(tx, p, learning_rate=0.1, weight_decay=0.0)
  g = jax.tree.map(jnp.ones_like, p)
  for step in range(3):
    u, s = tx.update(g, s, p)
    u = flat(u)
    np.testing.assert_allclose(u["bn0_0/bias"], -6.4, rtol=1e-6)  # 64x the lr
    np.testing.assert_allclose(u["conv0_0/bias"], -0.1, rtol=1e-6)
    np.testing.assert_allclose(u["whiten_bias"], -0.1 if step < 2 else 0.0, rtol=1e-6)
  # airbench's decay: every trained parameter, and the shifts' 64x lr leaves it alone
  # (PyTorch's SGD with weight_decay=wd/lr per group). A zero gradient leaves only the decay:
  # Nesterov's first step is lr * (1 + momentum) * wd * p.
  zero = jax.tree.map(jnp.zeros_like, p)
  for decay, decayed in (("all", set(flat(p))), ("kernels", {"conv0_0/kernel"})):
    tx = make_optimizer("nesterov", momentum=0.5, norm_bias_lr=64.0, decay=decay)
    s = init_opt_state(tx, p, learning_rate=0.1, weight_decay=0.2)
    u = flat(tx.update(zero, s, p)[0])
    for k, v in u.items():
      np.testing.assert_allclose(v, -0.1 * 1.5 * 0.2 if k in decayed else 0.0, rtol=1e-6)
    ug = flat(tx.update(g, s, p)[0])  # and the gradient part still gets the 64x
    np.testing.assert_allclose(ug["bn0_0/bias"] - u["bn0_0/bias"], -0.1 * 1.5 * 64, rtol=1e-6)


def test_alternating_flips_see_every_image_both_ways_every_two_epochs():
  key = jax.random.PRNGKey(0)
  e0, e1, e2 = (np.asarray(train.alternating_flips(key, 1000, jnp.int32(e))) for e in (0, 1, 2))
  np.testing.assert_array_equal(e1, ~e0)  # odd epochs: the mirror of even ones
  np.testing.assert_array_equal(e2, e0)
  assert 0.45 < e0.mean() < 0.55
  x = jax.random.normal(key, (4, 5, 5, 1))
  mask = jnp.asarray([True, False, True, False])
  got = train.training_inputs(key, x, flip=True, rotate=0.0, flip_B=mask)
  np.testing.assert_array_equal(got, jnp.where(mask[:, None, None, None], x[:, :, ::-1], x))


def test_the_recipe_on_small_images_is_refused_in_one_line(capsys, tmp_path):
  from dl101_jax.host import cli
  from experiments import modern

  with pytest.raises(SystemExit) as e:
    cli.main(modern.run, modern.CONFIG, ["--dataset", "digits", "--workdir", str(tmp_path)])
  err = capsys.readouterr().err.strip()
  assert e.value.code == 2 and len(err.splitlines()) == 1
  assert err.startswith("error: --dataset:") and "--variants tutorial,batchnorm" in err
  assert "airbench_net" not in err.split("--variants")[1]  # only rungs that can run there
  with pytest.raises(SystemExit) as e:
    cli.main(modern.run, modern.CONFIG, ["--dataset", "digits", "--variants", "airbench_net",
                                         "--workdir", str(tmp_path)])
  assert e.value.code == 2 and "airbench_net need" in capsys.readouterr().err


def test_the_ladder_is_in_results_and_summary(tmp_path):
  """Two rungs on digits: results.json's "ladder" has each rung's seeds and the second's
  gain with a verdict, and summary.md ends with the same table."""
  import json

  from dl101_jax.host import cli
  from experiments import modern

  cli.main(modern.run, modern.CONFIG, ["--dataset", "digits", "--variants", "tutorial,nesterov",
                                       "--epochs", "1", "--seeds", "2", "--train-size", "300",
                                       "--checkpoint-every", "0", "--workdir", str(tmp_path)])
  rows = json.load(open(tmp_path / "results.json"))["ladder"]
  assert [r["rung"] for r in rows] == ["tutorial", "nesterov"]
  assert all(len(r["val_accuracy_per_seed"]) == 2 for r in rows)
  # The verdict is the project's rule applied to these very seeds, not any of the three.
  from dl101_jax import verdict

  # Both rungs ran seeds 0 and 1 (same initial order of batches): a paired interval, and with
  # one gain in the ladder Holm's p is its own.
  assert rows[0]["seeds"] == rows[1]["seeds"] == [0, 1]
  low, high, p = verdict.paired_interval(rows[1]["val_accuracy_per_seed"],
                                         rows[0]["val_accuracy_per_seed"])
  assert rows[0]["gain"] is None and rows[1]["test"] == "paired"
  assert rows[1]["verdict"] == verdict.decide(low, high, p)
  assert rows[1]["gain_ci95"] == pytest.approx([low, high], nan_ok=True)
  assert rows[1]["p_holm"] == (None if math.isnan(p) else pytest.approx(p))
  assert rows[1]["gain"] == pytest.approx(rows[1]["val_accuracy"] - rows[0]["val_accuracy"])
  summary = (tmp_path / "summary.md").read_text()
  assert summary.rstrip().endswith(modern.ladder_table(rows).splitlines()[-1])
  assert "The ladder" in summary
  import matplotlib.image

  picture = matplotlib.image.imread(tmp_path / "ladder.png")  # one bar per rung, read back
  assert picture.shape[0] > 300 and picture.shape[1] > 500


def test_each_rungs_gain_gets_the_projects_verdict():
  from experiments import modern

  rows = modern.compare_rungs([
      {"rung": "a", "val_accuracy_per_seed": [0.50, 0.52], "seconds": 1.0},
      {"rung": "b", "val_accuracy_per_seed": [0.70, 0.71], "seconds": 1.0},  # clearly better
      {"rung": "c", "val_accuracy_per_seed": [0.40, 0.41], "seconds": 1.0},  # clearly worse
      {"rung": "d", "val_accuracy_per_seed": [], "seconds": 1.0},  # diverged: skipped
      {"rung": "e", "val_accuracy_per_seed": [0.30, 0.52], "seconds": 1.0},  # noise
      {"rung": "+ tta", "val_accuracy_per_seed": [0.5], "seconds": 0.0}])  # one seed
  assert [r["verdict"] for r in rows] == [None, "supported", "contradicted", None,
                                          "inconclusive", "inconclusive"]
  np.testing.assert_allclose(rows[1]["gain"], 0.195)
  np.testing.assert_allclose(rows[4]["gain"], 0.005)  # against c, the last that has seeds
  low, high = rows[1]["gain_ci95"]
  assert 0 < low < 0.195 < high
  assert rows[5]["gain_ci95"] == [None, None]  # one seed: no interval
  table = modern.ladder_table(rows)
  assert "| b | 0.7050 ± 0.0050 | +0.1950 [" in table and "| diverged |" in table
  assert table.splitlines()[-1].endswith("| inconclusive | (same run) |")


def test_rungs_on_the_same_seeds_are_paired_and_holm_covers_the_ladder():
  from experiments import modern

  seeds = [0, 1, 2, 3]
  base = [0.60, 0.70, 0.80, 0.65]  # the seeds differ by far more than the rungs
  rows = modern.compare_rungs([
      {"rung": "a", "val_accuracy_per_seed": base, "seeds": seeds, "seconds": 1.0},
      {"rung": "b", "val_accuracy_per_seed": [x + d for x, d in zip(base, [.02, .02, .03, .02])],
       "seeds": seeds, "seconds": 1.0},
      {"rung": "c", "val_accuracy_per_seed": [0.62, 0.72, 0.83, 0.67], "seeds": [4, 5, 6, 7],
       "seconds": 1.0}])
  assert [r["test"] for r in rows] == [None, "paired", "welch"]  # c ran other seeds
  assert rows[1]["verdict"] == "supported" and rows[2]["verdict"] == "inconclusive"
  p_b = modern.verdict.paired_interval(rows[1]["val_accuracy_per_seed"], base)[2]
  assert rows[1]["p_holm"] == pytest.approx(2 * p_b)  # the smaller of two p's, times 2
  unpaired = modern.compare_rungs([{**r, "seeds": None} for r in rows[:2]])
  assert unpaired[1]["test"] == "welch" and unpaired[1]["verdict"] == "inconclusive"


@pytest.mark.parametrize("flags, field", [
    ({"momentum": 0.85}, "--momentum"), ({"whiten_bias_epochs": 3}, "--whiten-bias-epochs"),
    ({"norm_bias_lr": 64.0}, "--norm-bias-lr"), ({"alternate_flip": True, "flip": False},
                                                "--alternate-flip")])
def test_a_flag_that_would_do_nothing_is_refused(flags, field):
  with pytest.raises(ConfigError, match=re.escape(field)):
    Config(**flags)
  # ... and accepted where it acts.
  Config(optimizer="nesterov", momentum=0.85, batch_norm=True, norm_bias_lr=64.0,
         alternate_flip=True)
  Config(dataset="cifar10", net="airbench", whiten_bias_epochs=3, norm_bias_lr=64.0)


def test_block_edge_ratio_sees_jpeg_like_8_pixel_blocks():
  """The README's JPEG finding rests on this measure: about 1 for a smooth image with no
  8-pixel period, above 1 once steps are added at the 8x8 block edges (rows and columns)."""
  from benchmarks.airbench_reference import block_edge_ratio

  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 32, 32, 3)).cumsum(1).cumsum(2)
  assert abs(block_edge_ratio(x) - 1.0) < 0.05
  blocky = x + 3.0 * rng.normal(size=(64, 4, 4, 3)).repeat(8, axis=1).repeat(8, axis=2)
  assert block_edge_ratio(blocky) > 1.2
  shifted = x.copy()
  shifted[:, 3::8] += 5.0  # steps off the block edges do not count as blocks
  assert block_edge_ratio(shifted) < 1.0
