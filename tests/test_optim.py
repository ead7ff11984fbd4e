"""Each update rule against optax's own (or written out), the masks by path, L2's value,
the schedules at their ends, and the parameter groups' defaults."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl101_jax.core import optim
from dl101_jax.core.optim import init_opt_state, kernel_mask, make_optimizer

# Module paths as the models name them: a nested block, BatchNorm, the head, the whitening.
PARAMS = {
    "conv0": {"kernel": jnp.full((3, 3, 2, 4), 0.5), "bias": jnp.full((4,), 0.1)},
    "block": {"bn": {"bias": jnp.full((4,), 0.2), "scale": jnp.ones((4,))},
              "conv": {"kernel": jnp.full((3, 3, 4, 4), -0.25)}},
    "head": {"kernel": jnp.full((4, 3), 2.0), "bias": jnp.zeros((3,))},
    "whiten_bias": jnp.full((2,), 0.3),
}


def grads(i):
  """Gradients that differ per step and leaf; one leaf of size 1e-6, where Adam's eps shows."""
  g = jax.tree.map(lambda p: jnp.full_like(p, 0.01 * (i + 1)) + 0.003 * jnp.arange(p.size)
                   .reshape(p.shape) % 0.02, PARAMS)
  g["conv0"]["bias"] = jnp.full((4,), 1e-6 * (i + 1))
  return g


def steps(tx, ref=None, n=3, lr=1e-2, wd=0.0):
  """n updates of tx (with this member's lr and decay) and of ref; params after each."""
  state = init_opt_state(tx, PARAMS, learning_rate=lr, weight_decay=wd, muon_lr=0.1)
  ref_state = ref.init(PARAMS) if ref else None
  p, q, out = PARAMS, PARAMS, []
  for i in range(n):
    u, state = tx.update(grads(i), state, p)
    p = optax.apply_updates(p, u)
    if ref:
      v, ref_state = ref.update(grads(i), ref_state, q)
      q = optax.apply_updates(q, v)
    out.append((p, q))
  return out


def assert_trees_close(a, b, rtol=1e-6, atol=1e-9):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_adam_is_optax_adam_with_the_usual_betas_and_eps():
  for p, q in steps(make_optimizer("adam"), optax.adam(1e-2, b1=0.9, b2=0.999, eps=1e-8)):
    assert_trees_close(p, q, rtol=1e-6)


def test_adamw_decays_kernels_only():
  ref = optax.adamw(1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1, mask=kernel_mask)
  for p, q in steps(make_optimizer("adamw"), ref, wd=0.1):
    assert_trees_close(p, q, rtol=1e-6)


def test_sgd_is_plain_sgd_and_leaves_batchnorm_and_the_whitening_bias_alone():
  # The defaults: no norm-bias scaling, no whitening-bias freeze, no schedule.
  for p, q in steps(make_optimizer("sgd"), optax.sgd(1e-2), n=3):
    assert_trees_close(p, q)


def test_nesterov_is_optax_nesterov_with_decay_on_kernels_or_all():
  for decay, mask in (("kernels", kernel_mask), ("all", None)):
    ref = optax.chain(optax.add_decayed_weights(0.1, mask=mask),
                      optax.sgd(1e-2, momentum=0.9, nesterov=True))
    for p, q in steps(make_optimizer("nesterov", decay=decay), ref, wd=0.1):
      assert_trees_close(p, q)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_norm_bias_lr_scales_only_batchnorms_shifts(name):
  plain = steps(make_optimizer(name), n=2)
  scaled = steps(make_optimizer(name, norm_bias_lr=2.0), n=2)
  (p1, _), (p2, _) = plain[0], scaled[0]
  d1 = p1["block"]["bn"]["bias"] - PARAMS["block"]["bn"]["bias"]
  d2 = p2["block"]["bn"]["bias"] - PARAMS["block"]["bn"]["bias"]
  np.testing.assert_allclose(d2, 2.0 * d1, rtol=1e-4, atol=1e-7)  # Adam: the update, not the gradient
  p1["block"]["bn"].pop("bias"), p2["block"]["bn"].pop("bias")
  assert_trees_close(p1, p2)


def test_kernel_mask_and_norm_bias_mask_follow_the_module_path():
  flat = lambda t: jax.tree_util.tree_flatten_with_path(t)[0]
  name = lambda path: "/".join(k.key for k in path)
  got = {name(k): bool(v) for k, v in flat(kernel_mask(PARAMS, include_head=False))}
  assert {k for k, v in got.items() if v} == {"conv0/kernel", "block/conv/kernel"}
  got = {name(k): bool(v) for k, v in flat(kernel_mask(PARAMS))}
  assert {k for k, v in got.items() if v} == {"conv0/kernel", "block/conv/kernel", "head/kernel"}
  got = {name(k): bool(v) for k, v in flat(optim.norm_bias_mask(PARAMS))}
  assert {k for k, v in got.items() if v} == {"block/bn/bias"}
  assert optim.norm_bias_mask({"layer_norm": {"bias": jnp.zeros(2)}})["layer_norm"]["bias"]


def test_l2_penalty_is_half_the_squared_hidden_kernels():
  want = 0.5 * (9 * 2 * 4 * 0.25 + 9 * 4 * 4 * 0.0625)  # conv0 and block/conv, not the head
  np.testing.assert_allclose(optim.l2_penalty(PARAMS), want, rtol=1e-6)
  assert float(optim.l2_penalty({"head": {"kernel": jnp.ones((2, 2))}})) == 0.0


@pytest.mark.parametrize("total", [1, 10, 100])
def test_schedules_start_peak_and_end_where_the_recipes_say(total):
  linear = optim.schedule_factor("linear", total)
  np.testing.assert_allclose([linear(0), linear(total)], [1.0, 0.0], atol=1e-7)
  np.testing.assert_allclose(linear(total / 2), 0.5, atol=1e-6)
  warm = optim.schedule_factor("warmup_linear", total)
  peak = int(0.23 * total)
  np.testing.assert_allclose(warm(total), 0.07, rtol=1e-5)
  np.testing.assert_allclose(warm(peak), 1.0 if peak else 0.2 * 5.0, rtol=1e-5)
  if peak:
    np.testing.assert_allclose(warm(0), 0.2, rtol=1e-6)
  assert optim.schedule_factor("constant", total) is None


def test_whitening_bias_steps_default_to_never_freezing():
  p = steps(make_optimizer("sgd"), n=3)
  w = [PARAMS["whiten_bias"]] + [pq[0]["whiten_bias"] for pq in p]
  assert all(float(jnp.abs(b - a).max()) > 0 for a, b in zip(w, w[1:]))


def test_muon_without_a_schedule_keeps_the_learning_rate_as_given():
  # The sgd group (head, biases) with a constant schedule is optax's Nesterov SGD with decay.
  (p, _), = steps(make_optimizer("muon"), n=1, lr=1e-2, wd=0.0)
  (q, _), = steps(make_optimizer("nesterov", decay="all"), n=1, lr=1e-2, wd=0.0)
  assert_trees_close(p["head"], q["head"])
  assert_trees_close(p["whiten_bias"], q["whiten_bias"])


def test_muon_scales_batchnorm_shifts_by_norm_bias_lr():
  (p1, _), = steps(make_optimizer("muon"), n=1)
  (p2, _), = steps(make_optimizer("muon", norm_bias_lr=2.0), n=1)
  d1 = p1["block"]["bn"]["bias"] - PARAMS["block"]["bn"]["bias"]
  d2 = p2["block"]["bn"]["bias"] - PARAMS["block"]["bn"]["bias"]
  np.testing.assert_allclose(d2, 2.0 * d1, rtol=1e-4, atol=1e-7)


def test_every_optimizer_has_its_label_and_unknown_names_are_refused():
  assert optim.LABELS == {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW",
                          "nesterov": "Nesterov", "muon": "Muon"}
  for name in optim.LABELS:
    make_optimizer(name)
  with pytest.raises(ValueError, match=r"^unknown optimizer 'rmsprop'$"):
    make_optimizer("rmsprop")
  with pytest.raises(ValueError, match=r"^unknown decay 'some'$"):
    make_optimizer("nesterov", decay="some")


@pytest.mark.parametrize("name", sorted(optim.LABELS))
def test_every_injected_value_is_the_members_and_a_missing_one_is_refused(name):
  # make_optimizer's values are placeholders: init_opt_state must replace each one, so that
  # no member ever steps with them, and must refuse a rule whose value it was not given.
  tx = make_optimizer(name)
  given = {"learning_rate": 0.03, "weight_decay": 0.002, "muon_lr": 0.05}
  hp = init_opt_state(tx, PARAMS, **given).hyperparams
  mine = [k for k in given if k in hp]  # adamw also injects optax's own eps_root
  assert "learning_rate" in mine and ("weight_decay" in mine) == (name != "sgd")
  assert ("muon_lr" in mine) == (name == "muon")
  assert {k: float(hp[k]) for k in mine} == pytest.approx({k: given[k] for k in mine})
  for k in mine:
    with pytest.raises(ValueError, match=f"^init_opt_state: no value given for {k}$"):
      init_opt_state(tx, PARAMS, **{**given, k: None})
  if name != "sgd":  # two missing: both named, in the rule's order
    with pytest.raises(ValueError, match="^init_opt_state: no value given for learning_rate, "
                                         "weight_decay$"):
      init_opt_state(tx, PARAMS, **{**given, "learning_rate": None, "weight_decay": None})


@pytest.mark.parametrize("schedule", ["linear", "warmup_linear"])
def test_a_schedule_without_its_length_is_refused(schedule):
  with pytest.raises(ValueError, match=f"^schedule '{schedule}' needs total_steps >= 1, got 0$"):
    make_optimizer("sgd", schedule)
  make_optimizer("sgd", schedule, 1)
  make_optimizer("sgd")  # the constant schedule has no length
