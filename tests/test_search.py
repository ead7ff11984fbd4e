"""Search: PBT's exploit and explore, halving's rung, the record, and whole searches.

Properties run on a tiny stacked population (a real TrainState with Adam's moments);
the whole-search tests train a small net on digits.
"""

import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl101_jax.core import population as pop
from dl101_jax.core import member_state
from dl101_jax.core.optim import init_opt_state, make_optimizer
from dl101_jax.tuning import ancestry
from helpers import killed_and_resumed, strip

SPACE = pop.Space(learning_rate=(1e-4, 1e-2), dropout=(0.0, 0.7), weight_decay=(0.0, 0.1),
                  l2=(0.0, 0.002))


@functools.lru_cache(maxsize=None)
def population_states(m: int) -> member_state.TrainState:
  """m members with distinct params, Adam moments, steps, hyperparameters and kept bests."""
  tx = make_optimizer("adamw")

  def one(j, hp):
    params = {"dense": {"kernel": jax.random.normal(jax.random.PRNGKey(j), (3, 2)),
                        "bias": jnp.zeros(2)}}
    opt = init_opt_state(tx, params, learning_rate=hp["learning_rate"],
                         weight_decay=hp["weight_decay"])
    s = member_state.TrainState(step=jnp.int32(0), apply_fn=None, params=params, tx=tx,
                                opt_state=opt,
                                hp={"dropout": hp["dropout"], "l2": hp["l2"], "l1": 0.0})
    for _ in range(2):  # distinct moments per member
      s = s.apply_gradients(grads=jax.tree.map(lambda p: p * (j + 1.0), params))
    # distinct steps, and kept bests (weights, accuracy, epoch) that exploit must copy too
    return s.replace(step=s.step + j, best={"params": jax.tree.map(lambda p: p - j, params)},
                     best_accuracy=j / 10.0, best_epoch=j + 1)

  hp = pop.sample(jax.random.PRNGKey(0), SPACE, m)
  return jax.jit(jax.vmap(one))(jnp.arange(m), hp)


def leaves_of(states, j):
  """Every leaf of member j except the hyperparameters explore rewrites."""
  s = jax.tree.map(lambda a: a[j], states)
  s = pop.set_hparams(jax.tree.map(lambda a: a[None], s),
                      {k: jnp.zeros(1) for k in pop.HPARAMS})
  return [np.asarray(a) for a in jax.tree.leaves(s)]


@settings(max_examples=25, deadline=None)
@given(m=st.sampled_from([3, 8]), data=st.data(), key=st.integers(0, 2**31 - 1),
       fraction=st.sampled_from([0.25, 0.5]))
def test_exploit_copies_exact_states_from_the_top(m, data, key, fraction):
  # Few member counts: each (m, fraction) compiles pbt_step once. Scores are accuracies,
  # k / 1000 (ties likely); not float32 denormals, which XLA:CPU flushes to zero.
  scores = data.draw(st.lists(st.integers(0, 1000).map(lambda k: k / 1000), min_size=m,
                              max_size=m))
  states = population_states(m)
  new, source, hp = pop.pbt_step(jax.random.PRNGKey(key), states, jnp.asarray(scores),
                                 space=SPACE, fraction=fraction, resample_probability=0.25)
  source = np.asarray(source)
  q = pop.quantile_size(m, fraction)
  order = sorted(range(m), key=lambda j: (-scores[j], j))
  top, bottom = set(order[:q]), set(order[m - q:])
  copied = [j for j in range(m) if source[j] != j]
  assert set(copied) == bottom  # exactly the bottom q copy
  old_hp = pop.get_hparams(states)
  for j in range(m):
    assert source[j] in (top if j in bottom else {j})
    # params, Adam's moments, the step and the kept best: bit for bit the source's
    for a, b in zip(leaves_of(new, j), leaves_of(states, source[j])):
      np.testing.assert_array_equal(a, b)
    if j not in bottom:  # members that did not copy keep their hyperparameters too
      for k in pop.HPARAMS:
        assert float(pop.get_hparams(new)[k][j]) == float(old_hp[k][j])
  for k in pop.HPARAMS:  # what the step returns is what the states now hold
    np.testing.assert_array_equal(np.asarray(hp[k]), np.asarray(pop.get_hparams(new)[k]))


@settings(max_examples=40, deadline=None)
@given(lo=st.floats(1e-6, 1.0), span=st.floats(1.0, 1e3), key=st.integers(0, 2**31 - 1),
       resample=st.floats(0, 1), u=st.lists(st.floats(0, 1), min_size=1, max_size=16))
def test_explore_and_sample_stay_within_bounds(lo, span, key, resample, u):
  hi = min(lo * span, 0.999)
  lo = min(lo, hi)
  space = pop.Space(learning_rate=(lo, hi), dropout=(lo, hi), weight_decay=(0.0, hi),
                    l2=(hi, hi))
  k = jax.random.PRNGKey(key)
  hp = pop.sample(k, space, len(u))
  out = pop.explore(jax.random.fold_in(k, 1), hp, space, resample)
  for name in pop.HPARAMS:
    b_lo, b_hi = (np.float32(v) for v in getattr(space, name))
    for vals in (np.asarray(hp[name]), np.asarray(out[name])):
      assert np.all((vals >= b_lo) & (vals <= b_hi)), (name, vals, b_lo, b_hi)
  np.testing.assert_array_equal(np.asarray(out["l2"]), np.float32(hi))  # lo == hi fixes it


def test_explore_perturbs_by_the_pbt_factors_when_not_resampling():
  hp = {k: jnp.full((64,), 0.05 if k != "learning_rate" else 1e-3) for k in pop.HPARAMS}
  out = pop.explore(jax.random.PRNGKey(0), hp, SPACE, 0.0)
  ratio = np.asarray(out["learning_rate"]) / 1e-3
  np.testing.assert_allclose(np.sort(np.unique(np.round(ratio, 5))), [0.8, 1.2])


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.floats(0, 1), min_size=1, max_size=20), eta=st.integers(2, 5))
def test_a_rung_keeps_exactly_the_top_ceil_n_over_eta(scores, eta):
  keep = pop.halving_keep(np.asarray(scores), eta)
  assert len(keep) == math.ceil(len(scores) / eta)
  assert keep == sorted(set(keep))
  dropped = [s for j, s in enumerate(scores) if j not in keep]
  assert not dropped or min(scores[j] for j in keep) >= max(dropped)


def test_ancestry_follows_copied_weights_back():
  hp = lambda lr: {"epoch": [1, 2, 3, 4], "learning_rate": lr, "dropout": [0.1] * 4,
                   "weight_decay": [0.0] * 4, "l2": [0.0] * 4}
  rec = {"hparams": [hp([1, 1, 1, 1]), hp([2, 2, 2, 2]), hp([3, 3, 3, 3])],
         "lineage": [[], [{"epoch": 2, "copied": 0}], [{"epoch": 3, "copied": 1}]]}
  rows = ancestry(rec, 2, 4)
  # member 2 owes epoch 4 to itself, epoch 3 to member 1, epochs 1-2 to member 0
  assert [(r["epoch"], r["member"], r["learning_rate"]) for r in rows] == [
      (1, 0, 1), (2, 0, 1), (3, 1, 2), (4, 2, 3)]


SMALL = ["--dataset", "digits", "--train-size", "600", "--net", "conv16-pool-fc64",
         "--epochs", "6", "--batch-size", "64"]


def test_one_member_without_exploit_equals_a_plain_run(tmp_path):
  from dl101_jax.config import Config
  from dl101_jax.host.experiment import run_experiment
  from experiments import search

  cfg = dataclasses.replace(search.CONFIG, dataset="digits", train_size=600,
                            net="conv16-pool-fc64", epochs=3, batch_size=64, members=1,
                            method="pbt", pbt_every=1, workdir=str(tmp_path / "search"))
  got = search.run(cfg)
  (name, hp), = search.population(cfg).items()
  plain = Config(dataset="digits", train_size=600, net="conv16-pool-fc64", epochs=3,
                 batch_size=64, optimizer="adamw", val_size=cfg.train_size // 10,
                 workdir=str(tmp_path / "plain"), **hp)
  ref = run_experiment(plain, {name: {}}, plot=False)
  history = lambda r: strip(r.json["variants"][0]["per_seed"])
  assert history(got) == history(ref) and history(ref)[0]["epoch"] == [1, 2, 3]
  assert got.json["search"]["winner"]["name"] == name


def test_a_pbt_winners_schedule_replayed_retraces_its_line_and_carries_to_another_seed(
    tmp_path, capsys):
  from dl101_jax.host import cli
  from experiments import search

  cfg = dataclasses.replace(search.CONFIG, dataset="digits", train_size=600,
                            net="conv16-pool-fc64", epochs=3, batch_size=64, members=4,
                            method="pbt", pbt_every=1, pbt_fraction=0.5, checkpoint_every=0,
                            workdir=str(tmp_path / "search"))
  found = search.run(cfg).json
  schedule = found["search"]["winner"]["schedule"]
  assert len({step["member"] for step in schedule}) > 1  # the winner carries copied weights
  path = str(tmp_path / "search" / "results.json")
  rep = search.run(dataclasses.replace(search.CONFIG, replay=path)).json
  assert rep["replay"]["schedule"] == schedule and len(rep["variants"]) == 1
  # The states trained each epoch with the schedule's values, read back from the device.
  used = rep["replay"]["used"]
  assert [u["epoch"] for u in used] == [1, 2, 3]
  for u, want in zip(used, schedule):
    assert {k: u[k] for k in pop.HPARAMS} == pytest.approx({k: want[k] for k in pop.HPARAMS})
  # All members share the seed, so epoch e of the replay is epoch e of the member whose
  # weights the winner carries then: up to the rounding of one member's program instead of 4.
  by_index = [v["per_seed"][0] for v in found["variants"]]
  mine = rep["variants"][0]["per_seed"][0]
  for e, step in enumerate(schedule):
    line = by_index[step["member"]]
    assert mine["val_loss"][e] == pytest.approx(line["val_loss"][e], rel=1e-4), e
  assert rep["replay"]["val_accuracy"] == pytest.approx(
      found["search"]["winner"]["val_accuracy"], abs=1 / 60 + 1e-6)  # at most one of 60 flips
  # TensorBoard's LearningRate curve of the replay is the schedule's, epoch by epoch.
  from helpers import read_scalars

  rates = read_scalars(str(tmp_path / "search" / "replay" / "replay"))["LearningRate"]
  assert rates == [(e["epoch"], pytest.approx(e["learning_rate"], rel=1e-6)) for e in schedule]
  # Another seed: the same schedule from another start, a different run.
  other = search.run(dataclasses.replace(search.CONFIG, replay=path, seed=5,
                                         workdir=str(tmp_path / "seed5"))).json
  assert other["replay"]["used"] == used
  assert other["variants"][0]["per_seed"][0]["val_loss"] != mine["val_loss"]
  # What --replay cannot take, in one line each.
  for flags, message in (
      (["--epochs", "5"], "--epochs: --replay takes every setting from RESULTS_JSON"),
      (["--replay", str(tmp_path / "nope.json")], "--replay: cannot read"),
      (["--replay", str(tmp_path / "seed5" / "results.json")],
       "is not the results.json of experiments.search")):
    with pytest.raises(SystemExit) as e:
      cli.main(search.run, search.CONFIG, ["--replay", path, *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err


def test_halving_drops_members_and_spends_less(tmp_path):
  from experiments import search

  cfg = dataclasses.replace(search.CONFIG, dataset="digits", train_size=600,
                            net="conv16-pool-fc64", epochs=3, batch_size=64, members=4,
                            method="halving", eta=2, rung_epochs=1, checkpoint_every=0,
                            workdir=str(tmp_path))
  s = search.run(cfg).json["search"]
  # 4 -> 2 -> 1 members: 4 + 2 + 1 epochs
  assert [len(r["kept"]) for r in s["rungs"]] == [2, 1]
  assert s["member_epochs"] == 7
  for r in s["rungs"]:
    kept = [r["val_accuracy"][r["members"].index(i)] for i in r["kept"]]
    assert min(kept) >= max(v for i, v in zip(r["members"], r["val_accuracy"])
                            if i not in r["kept"])
  stopped = [p["stopped_at"] for p in s["population"]]
  assert sorted(x for x in stopped if x) == [1, 1, 2] and stopped.count(None) == 1
  assert s["winner"]["name"] == s["population"][stopped.index(None)]["name"]
  assert [p["epochs_trained"] for p in s["population"]] == [x or 3 for x in stopped]


def test_pbt_killed_mid_search_resumes_bit_identical(tmp_path):
  args = [*SMALL, "--members", "4", "--method", "pbt", "--pbt-every", "2",
          "--pbt-fraction", "0.5"]
  a, b, again = killed_and_resumed("experiments.search", args, tmp_path, epoch=3)
  assert "Resuming" in again.stdout
  assert strip(a) == strip(b)  # bit for bit, lineage and hyperparameter trajectories included
  s = a["search"]
  # Two PBT steps (epochs 2 and 4), each: 2 of 4 copy a top-2 member.
  events = [ev for p in s["population"] for ev in p["lineage"]]
  assert sorted(ev["epoch"] for ev in events) == [2, 2, 4, 4]
  for ev in events:
    assert ev["donor_val_accuracy"] >= ev["val_accuracy"]
  for p in s["population"]:  # hyperparameters recorded for every epoch, within bounds
    assert p["hparams"]["epoch"] == list(range(1, 7))
    lo, hi = s["space"]["learning_rate"]
    assert all(np.float32(lo) <= v <= np.float32(hi) for v in p["hparams"]["learning_rate"])
  assert s["member_epochs"] == 24 and s["winner"]["test_accuracy"] is not None
  assert [r["epoch"] for r in s["winner"]["schedule"]] == list(range(1, 7))
  from PIL import Image

  for png in ("search.png", "schedule.png"):
    with Image.open(tmp_path / "ref" / png) as im:
      assert im.format == "PNG" and im.size[0] > 600


@pytest.mark.parametrize("flag, message", [
    (["--learning-rate", "0.01"], "--learning-rate: the search samples it; set its bounds with "
                                  "--lr-range"),
    (["--lr-range", "0,1e-2"], "--lr-range: needs lo > 0"),
    (["--dropout-range", "0.2,1.0"], "--dropout-range: must lie in [0, 1)"),
    (["--seeds", "3"], "--seeds: a search samples its population from --seed"),
    (["--optimizer", "adam"], "--optimizer: must be adamw or nesterov while the search "
                              "samples weight decay"),  # the flag given, not the default
    (["--optimizer", "adam", "--weight-decay-range", "0,0.05"],
     "--weight-decay-range: needs --optimizer adamw"),
    (["--method", "grid", "--eta", "3"], "--eta: applies to --method halving only"),
    (["--method", "halving", "--pbt-every", "3"], "--pbt-every: applies to --method pbt only"),
])
def test_bad_search_flags_are_one_line(flag, message, capsys, tmp_path):
  from dl101_jax.host import cli
  from experiments import search

  with pytest.raises(SystemExit) as e:
    cli.main(search.run, search.CONFIG, ["--dataset", "digits", "--workdir",
                                         str(tmp_path / "a" / "b"), *flag])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and message in err, err
  assert not list(tmp_path.iterdir())  # refused before anything was written


def test_selection_holds_out_ten_percent_of_the_data_on_disk(tmp_path):
  """A prepared 10k CIFAR-10 dir holds out 1,000, not 10% of the 50k it would download."""
  from dl101_jax.host.experiment import held_out_validation
  from experiments import search

  info = tmp_path / "cifar10" / "3.0.2" / "dataset_info.json"
  info.parent.mkdir(parents=True)
  info.write_text(json.dumps({"splits": [{"name": "train", "shardLengths": ["6000", "4000"]},
                                         {"name": "test", "shardLengths": ["2000"]}]}))
  pick = lambda **kw: held_out_validation(dataclasses.replace(search.CONFIG, **kw)).val_size
  assert pick(data_dir=str(tmp_path)) == 1000
  assert pick(data_dir=str(tmp_path), train_size=3000) == 300
  assert pick(data_dir=str(tmp_path), val_size=77) == 77
  assert pick(data_dir=str(tmp_path / "empty"), dataset="cifar10") == 5000
  assert pick(dataset="digits", data_dir=None) == 143


def test_the_comparison_gives_every_method_the_same_budget():
  from experiments import search_compare as sc

  assert sc.halving_cost(20, 10, 2, 2) == 40 + 20 + 10 + 6 + 4 == 80
  assert sc.halving_members(80, 10, 2, 2) == 20
  runs = sc.plan(dataclasses.replace(sc.CONFIG, members=8, epochs=10, search_seeds=2,
                                     workdir="w"))
  assert [(c.method, c.seed, c.members) for c in runs] == [
      ("grid", 0, 8), ("grid", 1, 8), ("halving", 0, 20), ("halving", 1, 20),
      ("pbt", 0, 8), ("pbt", 1, 8)]
  assert runs[3].run_dir == "w/halving-seed1"
  # Each method gets its own flags, and only those.
  tuned = sc.plan(dataclasses.replace(sc.CONFIG, eta=3, pbt_every=1, search_seeds=1))
  assert [(c.method, c.eta, c.pbt_every) for c in tuned] == [
      ("grid", 2, 2), ("halving", 3, 2), ("pbt", 2, 1)]
  # Halving's start never exceeds the budget, and one more member would.
  for budget, epochs, rung, eta in [(24, 6, 2, 2), (80, 10, 3, 3), (10, 10, 1, 2)]:
    n = sc.halving_members(budget, epochs, rung, eta)
    assert sc.halving_cost(n, epochs, rung, eta) <= budget
    assert n == 1 or sc.halving_cost(n + 1, epochs, rung, eta) > budget


def test_each_method_is_judged_against_grid_paired_by_search_seed_with_holm():
  from dl101_jax import verdict
  from experiments import search_compare as sc

  acc = {"grid": [0.60, 0.70, 0.65], "halving": [0.61, 0.71, 0.66],  # +0.01 on every seed
         "pbt": [0.70, 0.60, 0.66]}
  rows = [{"method": m, "seed": s, "test_accuracy": a}
          for m, accs in acc.items() for s, a in enumerate(accs)]
  out = sc.versus_grid(rows[::-1])  # order of the rows does not matter: seeds pair them
  assert [(c["method"], c["test"], c["n"]) for c in out] == [("pbt", "paired", [3, 3]),
                                                             ("halving", "paired", [3, 3])]
  halving = out[1]
  assert halving["difference"] == pytest.approx(0.01)
  assert halving["ci95"] == pytest.approx([0.01, 0.01])  # the same gain on every seed: exact
  assert halving["verdict"] == "supported" and halving["p_holm"] == 0.0
  low, high, p = verdict.paired_interval(acc["pbt"], acc["grid"])
  assert out[0]["ci95"] == pytest.approx([low, high]) and out[0]["verdict"] == "inconclusive"
  assert out[0]["p_holm"] == pytest.approx(p)  # Holm's second step: halving's 0 went first
  table = sc.versus_table(out)
  assert "| halving − grid | +0.0100 [+0.0100, +0.0100] | paired (0) | supported |" in table
  # A seed whose search found no winner (nan) leaves the pairing; without grid, no rows.
  rows[5]["test_accuracy"] = float("nan")  # halving, seed 2
  assert [c["test"] for c in sc.versus_grid(rows)] == ["welch", "paired"]
  assert sc.versus_grid([r for r in rows if r["method"] != "grid"]) == []


def test_the_prior_is_log_uniform_for_the_learning_rate_and_uniform_for_the_rest():
  space = pop.Space(learning_rate=(1e-4, 1e-2), dropout=(0.1, 0.5), weight_decay=(0.0, 0.1),
                    l2=(0.0, 0.002))
  u = jnp.asarray([0.0, 0.25, 0.5, 1.0], jnp.float32)
  np.testing.assert_allclose(pop._from_unit(u, "learning_rate", space),
                             [1e-4, 10 ** -3.5, 1e-3, 1e-2], rtol=1e-5)
  np.testing.assert_allclose(pop._from_unit(u, "dropout", space), [0.1, 0.2, 0.3, 0.5],
                             rtol=1e-6)
  hp = pop.sample(jax.random.PRNGKey(0), space, 20_000)
  assert abs(np.median(np.log10(np.asarray(hp["learning_rate"]))) + 3) < 0.03
  assert abs(np.median(np.asarray(hp["weight_decay"])) - 0.05) < 0.002
  # The default space: learning rates 1e-4..1e-2, dropout 0..0.7, AdamW's
  # weight decay 0..0.1, L2 0..0.002.
  assert dataclasses.astuple(pop.Space()) == ((1e-4, 1e-2), (0.0, 0.7), (0.0, 0.1), (0.0, 0.002))


@pytest.mark.parametrize("m, fraction, q", [
    (0, 0.25, 0), (1, 0.25, 0), (2, 0.25, 1), (3, 0.25, 1), (4, 0.25, 1), (8, 0.25, 2),
    (8, 0.5, 4), (8, 0.9, 4), (9, 0.9, 4), (7, 0.01, 1)])
def test_pbt_replaces_a_fraction_of_the_population_at_least_one_at_most_half(m, fraction, q):
  assert pop.quantile_size(m, fraction) == q


def test_donors_are_drawn_from_the_whole_top_and_ties_rank_the_lower_index_first():
  m, states = 8, population_states(8)
  seen = set()
  for k in range(40):
    _, source, _ = pop.exploit_explore(jax.random.PRNGKey(k), states, jnp.arange(m, dtype=float),
                                       space=SPACE, fraction=0.25, resample_probability=0.25)
    seen |= set(np.asarray(source)[:2].tolist())  # the bottom two: members 0 and 1
  assert seen == {6, 7}  # the best (7) and the second (6) both give their weights
  _, source, _ = pop.exploit_explore(jax.random.PRNGKey(0), states, jnp.zeros(m), space=SPACE,
                                     fraction=0.25, resample_probability=0.25)
  assert set(np.asarray(source)[6:].tolist()) <= {0, 1}  # all tied: 0, 1 top; 6, 7 bottom
  assert np.asarray(source)[:6].tolist() == list(range(6))


def test_the_jitted_pbt_step_is_exploit_explore():
  states, score = population_states(3), jnp.asarray([0.2, 0.9, 0.5])
  kw = dict(space=SPACE, fraction=0.25, resample_probability=0.25)
  a = pop.pbt_step(jax.random.PRNGKey(1), states, score, **kw)
  b = pop.exploit_explore(jax.random.PRNGKey(1), states, score, **kw)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-6)
  assert pop.Space() == pop.Space() and hash(pop.Space()) == hash(pop.Space())
  with pytest.raises(dataclasses.FrozenInstanceError):
    SPACE.dropout = (0.0, 0.1)


def test_a_searchs_keys_are_its_seed_tag_and_epoch():
  k = pop.key_for(3, pop.EXPLORE)
  assert np.array_equal(jax.random.key_data(k), jax.random.key_data(pop.key_for(3, pop.EXPLORE, 0)))
  want = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(3), pop.EXPLORE), 0)
  assert np.array_equal(np.asarray(k), np.asarray(want))
  assert not np.array_equal(np.asarray(k), np.asarray(pop.key_for(3, pop.EXPLORE, 1)))
