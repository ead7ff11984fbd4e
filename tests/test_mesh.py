"""The (members, data) mesh: a population split over 8 CPU devices on 'members' against the
same population on one device, PBT's exploit across devices, checkpoints that move
between meshes, and the states kept split between chunks (each device its own members).

How exact: members never interact, so no sum is split across devices as in data parallelism.
What differs is XLA's CPU code for 2 members a device against 12 on one: the batched matmuls
and convolutions take other kernels, whose roundings differ in the last bit (an epoch's
training losses agreed to 1.3e-5 here, most exactly), and Adam with dropout compounds that
(after epoch 2 one of 12 members' validation loss moved by 1e-4, its accuracy by 3 of 360
images). So: an epoch from the same weights within 1e-4, the end within 1e-2; halving's
rungs and winner equal. These bounds are for digits at
Adam's lr 1e-3: on one device, vmapping the same members 3 wide instead of 9 moves an lr 1e-2
member 7 of 360 images (docs/results/mesh_width_floor_digits.md), and a CIFAR-10 epoch's 105
steps compound the last bit further (docs/results/mesh_protocol_cifar.md).

With --member-loop the bound is 0: each device runs the one-device program on its own rows
(host/per_device.py) and each member is computed alone (lax.map), so PBT resumed on 8 devices
from a 1-device checkpoint ends with every number of its results.json equal to one device's.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from dl101_jax.config import Config, ConfigError
from dl101_jax.host.parallel import mesh_shape
from helpers import ROOT, env, run_module

sys.path.insert(0, os.path.join(ROOT, "tools"))
from compare_runs import numbers  # noqa: E402

EIGHT = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
FIRST, LAST = 1e-4, 1e-2


def _run(module, *args, timeout=300):
  r = run_module(module, "--dataset", "digits", *args, timeout=timeout, **EIGHT)
  assert r.returncode == 0, r.stderr[-3000:]
  return r


SPY = r"""
import json, runpy, sys
import jax
from dl101_jax.host import loop
seen, after = [], loop._after_chunk
def spy(states, progress, *rest):  # where the states are between chunks
  leaf = jax.tree.leaves(states)[0]
  seen.append([progress.epoch, leaf.shape[0], str(leaf.sharding.spec),
               sorted({s.data.shape[0] for s in leaf.addressable_shards})])
  return after(states, progress, *rest)
loop._after_chunk = spy
sys.argv = sys.argv[1:]  # the module, then its flags
try:
  runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
finally:
  print("BETWEEN_CHUNKS", json.dumps(seen))
"""


def _spied(module, *args, timeout=300):
  """`_run`, recording where the states are after each chunk (`loop._after_chunk`)."""
  r = subprocess.run([sys.executable, "-c", SPY, module, "--dataset", "digits", *args],
                     cwd=ROOT, env=env(**EIGHT), capture_output=True, text=True,
                     timeout=timeout)
  assert r.returncode == 0, r.stderr[-3000:]
  return r


def _seeds(path):
  res = json.load(open(path))
  return res, {(v["name"], i): h for v in res["variants"] for i, h in enumerate(v["per_seed"])}


def _rewind(src, dst, group, epochs):
  """A copy of workdir `src` as if it had stopped after `epochs`: later checkpoints removed,
  as after a kill (each holds its members' kept bests)."""
  shutil.copytree(src, dst)
  ckpts = dst / "checkpoints" / group
  for step in os.listdir(ckpts):
    if int(step) > epochs:
      shutil.rmtree(ckpts / step)


def test_twelve_members_padded_over_eight_devices_resume_a_one_device_checkpoint(tmp_path):
  args = ("experiments.dropout", "--seeds", "6", "--epochs", "2",  # 12 members: 16 slots
          "--train-size", "720")  # half of digits: the same program, half the steps
  _run(*args, "--devices", "1", "--workdir", str(tmp_path / "one"))
  # The 1-device checkpoint of epoch 1 resumes on 8 devices, 2 members a device.
  _rewind(tmp_path / "one", tmp_path / "moved", "dropout+no_dropout", 1)
  r8 = _spied(*args, "--workdir", str(tmp_path / "moved"))
  assert "compiling 12 model(s) into one program (16 over 8 devices)" in r8.stdout
  # Between chunks each device held its own 2 of the 16 rows, never all of them.
  between = json.loads(r8.stdout.split("BETWEEN_CHUNKS ")[1].splitlines()[0])
  assert between == [[2, 16, "P('members',)", [2]]], between
  # Its checkpoints (12 members: 3 a device, over 4 groups of 2) export on one device.
  e = run_module("dl101_jax.export", "--workdir", str(tmp_path / "moved"), "--variant",
                 "dropout", "--seed", "5", "--out", str(tmp_path / "x"))
  assert e.returncode == 0, e.stderr
  assert json.load(open(tmp_path / "x" / "model.json"))["epoch"] == 2
  moved, m = _seeds(tmp_path / "moved" / "results.json")
  one, o = _seeds(tmp_path / "one" / "results.json")
  assert moved["mesh"] == {"members": 8, "data": 1} and moved["devices"] == 8
  assert one["mesh"] == {"members": 1, "data": 1} and len(o) == len(m) == 12
  for k in o:  # epoch 1 is the checkpoint's; epoch 2 ran on 1 device and on 8
    assert m[k]["train_loss"][0] == o[k]["train_loss"][0]
    assert abs(m[k]["train_loss"][1] - o[k]["train_loss"][1]) < FIRST, (k, m[k], o[k])
    for metric in ("val_loss", "val_accuracy"):
      assert abs(m[k][metric][-1] - o[k][metric][-1]) < LAST, (k, metric)
  # Memory, as results.json records it: every device held 2 of the 16 rows, where one device
  # holds all 12 (every leaf of a state is stacked over the members).
  (g8,), (g1,) = moved["groups"], one["groups"]
  assert g1["state_bytes_per_device"] == 6 * g8["state_bytes_per_device"] > 0
  # The padded slots leave no trace: 12 histories of 2 epochs, 12 TensorBoard runs.
  assert sorted(len(h["epoch"]) for h in m.values()) == [2] * 12
  assert len([d for d in os.listdir(tmp_path / "moved") if "-seed" in d]) == 12


def test_member_loop_pbt_resumed_on_eight_devices_equals_one_device_bit_for_bit(tmp_path):
  # --member-loop: each device runs the one-device program on its own rows, members one after
  # another, so nothing about the mesh or the width reaches a member's arithmetic. 12 members
  # exploit after every epoch; after epoch 2 across the 8 devices (16 rows, 2 a device).
  args = ("experiments.search", "--method", "pbt", "--members", "12", "--pbt-every", "1",
          "--epochs", "3", "--train-size", "360", "--member-loop")
  _run(*args, "--devices", "1", "--workdir", str(tmp_path / "one"))
  # The 1-device checkpoint of epoch 1 resumes on 8 devices: epochs 2 and 3 and the exploit
  # after epoch 2 run there.
  _rewind(tmp_path / "one", tmp_path / "moved", "+".join(f"m{i:02d}" for i in range(12)), 1)
  r8 = _spied(*args, "--workdir", str(tmp_path / "moved"))
  assert "(16 over 8 devices), a copy for each device" in r8.stdout
  assert json.loads(r8.stdout.split("BETWEEN_CHUNKS ")[1].splitlines()[0]) == [
      [e, 16, "P('members',)", [2]] for e in (2, 3)]
  one = json.load(open(tmp_path / "one" / "results.json"))
  moved = json.load(open(tmp_path / "moved" / "results.json"))
  assert one["mesh"] == {"members": 1, "data": 1} and moved["mesh"] == {"members": 8, "data": 1}
  assert any(m["lineage"] for m in one["search"]["population"])  # it exploited
  a, b = numbers(one), numbers(moved)  # all but the times and the placement
  assert len(a) > 1000 and a == b, [(k, a[k], b.get(k)) for k in a if a[k] != b.get(k)][:5]


def test_halving_on_eight_devices_pads_each_rung_and_its_checkpoint_resumes_on_one(tmp_path):
  args = ("experiments.search", "--method", "halving", "--members", "12", "--rung-epochs", "1",
          "--epochs", "3", "--train-size", "720")
  r8 = _spied(*args, "--workdir", str(tmp_path / "eight"))
  # 12 members train as 16 rows, 2 a device; the rungs keep 6, then 3, each padded to 8 (one
  # program for both: the second rung compiles nothing).
  assert json.loads(r8.stdout.split("BETWEEN_CHUNKS ")[1].splitlines()[0]) == [
      [1, 16, "P('members',)", [2]], [2, 8, "P('members',)", [1]], [3, 8, "P('members',)", [1]]]
  assert r8.stdout.count("compiling") == 2
  _rewind(tmp_path / "eight", tmp_path / "moved", "+".join(f"m{i:02d}" for i in range(12)), 1)
  _run(*args, "--devices", "1", "--workdir", str(tmp_path / "moved"))  # epoch 1's 6 (3 a device)
  eight = json.load(open(tmp_path / "eight" / "results.json"))
  moved = json.load(open(tmp_path / "moved" / "results.json"))
  kept = lambda r: [(g["epoch"], g["kept"]) for g in r["search"]["rungs"]]  # noqa: E731
  assert kept(eight) == kept(moved)
  assert [(e, len(k)) for e, k in kept(eight)] == [(1, 6), (2, 3)]
  assert eight["search"]["winner"]["name"] == moved["search"]["winner"]["name"]


def test_the_default_split_and_the_flag():
  c = Config(name="t", dataset="digits", net="fc8")
  assert mesh_shape(c, 8, members=12) == (8, 1)  # enough members: each device trains its own
  assert mesh_shape(c, 8, members=8) == (8, 1)
  assert mesh_shape(c, 8, members=3) == (1, 8)  # too few: split each batch instead
  assert mesh_shape(c, 1, members=12) == (1, 1)
  assert mesh_shape(c.replace(mesh="members=4,data=2"), 8, members=3) == (4, 2)
  with pytest.raises(ConfigError, match=r"--mesh: members=4,data=4 uses 16 devices, but 8 are "
                     r"used \(--devices, or all\); the two axes must multiply to 8"):
    mesh_shape(c.replace(mesh="members=4,data=4"), 8)
  loop = c.replace(member_loop=True)  # each device trains its own rows, however few
  assert mesh_shape(loop, 8, members=3) == (8, 1) and mesh_shape(loop, 1, members=3) == (1, 1)
  assert mesh_shape(loop.replace(mesh="members=2,data=1"), 2) == (2, 1)
  with pytest.raises(ConfigError, match=r"^--member-loop: trains each device's own members whole"
                     r", so --mesh must not split batches: use --mesh members=8,data=1 or no "
                     r"--mesh, got --mesh members=4,data=2$"):
    loop.replace(mesh="members=4,data=2")
  for bad in ("4x2", "members=0,data=8", "data=2,members=4", "members=4"):
    with pytest.raises(ConfigError, match=r"--mesh: must be members=M,data=D"):
      c.replace(mesh=bad)


def test_a_mesh_that_does_not_fit_the_devices_is_one_line(tmp_path, capsys):
  from dl101_jax.host import cli
  from experiments import dropout

  with pytest.raises(SystemExit) as e:
    cli.main(dropout.run, dropout.CONFIG, ["--dataset", "digits", "--mesh", "members=3,data=3",
                                           "--workdir", str(tmp_path)])
  n = len(__import__("jax").devices())
  assert e.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
      f"error: --mesh: members=3,data=3 uses 9 devices, but {n} are used (--devices, or all); "
      f"the two axes must multiply to {n}"]


PLACEMENT = r"""
import sys
import jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, "tests")
from test_search import SPACE, population_states
from dl101_jax.config import Config
from dl101_jax.core import population as pop
from dl101_jax.host import placement
from dl101_jax.host.parallel import runtime
from dl101_jax.tuning import _pbt_placed

rt = runtime(Config(name="t", dataset="digits", net="fc8"), members=12)
assert rt.axes == {"members": 8, "data": 1}
states = population_states(12)  # a real TrainState: params, Adam's moments, kept bests
rows = lambda tree: [np.asarray(a) for a in jax.tree.leaves(tree)]

def check(tree, want_rows, per_device, spec="P('members',)"):
  leaf = jax.tree.leaves(tree)[0]
  assert str(leaf.sharding.spec) == spec, leaf.sharding
  assert {s.data.shape[0] for s in leaf.addressable_shards} == {per_device}
  for got, want in zip(rows(tree), rows(want_rows), strict=True):
    np.testing.assert_array_equal(got, want)

take = lambda ix: jax.tree.map(lambda a: a[np.asarray(ix)], states)
# 12 members: 16 rows, 2 a device; the 4 padding rows copy the last member.
split = placement.placed(states, 12, rt)
check(split, take(list(range(12)) + [11] * 4), 2)
# Halving's rung / pruning: 9 of them, in that order, padded again and still split.
keep = [0, 3, 5, 7, 9, 11, 2, 4, 6]
check(placement.select(split, keep), take(keep + [6] * 7), 2)
# A checkpoint holds exactly the members: 8 split over the 8 devices; 12 over 4 groups of 2
# devices (3 a device, not 12); 7 (no common divisor with 8) on every device.
check(placement.trim(placement.select(split, range(8)), 8, rt), take(range(8)), 1)
twelve = placement.trim(split, 12, rt)
check(twelve, states, 3)
assert jax.tree.leaves(twelve)[0].sharding.mesh.shape == {"members": 4, "copies": 2}
check(placement.trim(split, 7, rt), take(range(7)), 7, spec="P()")
# ... and a restore puts them back on the chunks' split, padded.
check(placement.placed(twelve, 12, rt), take(list(range(12)) + [11] * 4), 2)
# PBT on the split, padded population: the same step as on the 12 alone, bit for bit.
key, score = jax.random.PRNGKey(3), jnp.asarray(np.linspace(0.9, 0.1, 12), jnp.float32)
kw = dict(space=SPACE, fraction=0.25, resample_probability=0.25)
one, src1, hp1 = pop.pbt_step(key, states, score, **kw)
new, src, hp = _pbt_placed(key, split, score, sharding=placement.members_axis(split)[0], **kw)
np.testing.assert_array_equal(src, src1)
assert sorted(np.flatnonzero(np.asarray(src) != np.arange(12))) == [9, 10, 11]
for k in hp1:
  np.testing.assert_array_equal(hp[k], hp1[k])
check(new, jax.tree.map(lambda a: a[np.asarray(list(range(12)) + [11] * 4)], one), 2)
# A replayed schedule sets every row's values and leaves the rows where the next chunk's
# program expects them (it refused a replay on a split mesh before).
from dl101_jax.host.group import Progress
from dl101_jax.tuning import ReplayStep
values = {"learning_rate": 0.003, "dropout": 0.25, "weight_decay": 0.01, "l2": 0.0005}
progress = Progress.fresh(12)
progress.epoch = 1
replayed = ReplayStep(schedule=({"epoch": 1, **values}, {"epoch": 2, **values}))(split, progress)
assert {s.data.shape[0] for s in jax.tree.leaves(replayed)[0].addressable_shards} == {2}
for k, v in pop.get_hparams(replayed).items():
  assert str(v.sharding.spec) == "P('members',)", (k, v.sharding)
  np.testing.assert_allclose(np.asarray(v), np.full(16, values[k], np.float32))
print("placement ok")
"""


def test_members_stay_split_and_padded_through_selection_pbt_and_checkpoints():
  """placement.py on 8 CPU devices: the moves `fit` makes between chunks keep each device's
  own members on it, pad with copies of the last member, and hand back exact members."""
  r = subprocess.run([sys.executable, "-c", PLACEMENT], cwd=ROOT, env=env(**EIGHT),
                     capture_output=True, text=True, timeout=240)
  assert r.returncode == 0 and "placement ok" in r.stdout, r.stderr[-3000:]
