"""What TensorBoard itself shows for a run: its server (the dev dependency `tensorboard`),
started on the run's workdir and asked through the HTTP API its dashboards use; and
--tensorboard-verbose's histograms against numbers computed here."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl101_jax.config import Config
from dl101_jax.core import losses, member_state, models, optim, train
from dl101_jax.host import tb_detail
from helpers import env, run_module

pytest.importorskip("tensorboard")

SEEDS = 3


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
  """experiments.dropout on digits, 3 seeds, --tensorboard-verbose 3; TensorBoard serving it."""
  wd = tmp_path_factory.mktemp("tb")
  r = run_module("experiments.dropout", "--dataset", "digits", "--epochs", "2", "--seeds",
                 str(SEEDS), "--tensorboard-verbose", "3", "--workdir", str(wd), timeout=240)
  assert r.returncode == 0, r.stderr[-3000:]
  port = _free_port()
  server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(wd),
                             "--port", str(port), "--reload_interval", "0"], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f"http://localhost:{port}"

  def get(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as f:
      raw = f.read()
    return raw if path.startswith("/data/plugin/images/individualImage") else json.loads(raw)

  deadline = time.time() + 60
  while True:
    try:
      get("/data/plugins_listing")
      break
    except OSError:
      assert time.time() < deadline and server.poll() is None, "TensorBoard did not start"
      time.sleep(0.3)
  yield wd, get
  server.terminate()
  server.wait(timeout=30)


def test_the_dashboards_that_have_data(board):
  _, get = board
  listing = get("/data/plugins_listing")
  on = {k for k, v in listing.items() if v["enabled"]}
  assert {"scalars", "hparams", "images", "text", "histograms", "distributions"} <= on


def test_four_runs_per_model_and_a_mean_run_per_variant(board):
  _, get = board
  runs = set(get("/data/runs"))
  expected = {"."}
  for v in ("dropout", "no_dropout"):
    for s in range(SEEDS):
      expected |= {f"{v}-seed{s}{sub}" for sub in ("", "/train", "/validation", "/steps")}
    expected |= {f"{v}-mean{sub}" for sub in ("", "/train", "/validation")}
  assert runs == expected
  tags = get("/data/plugin/scalars/tags")
  assert set(tags["dropout-seed1"]) == {"Loss", "Accuracy", "Loss/Validation",
                                        "Accuracy/Validation", "LearningRate",
                                        "Sparsity/conv0_0", "Sparsity/conv1_0",
                                        "Sparsity/conv1_1", "Sparsity/fc0"}
  # train/ and validation/ share their tags: TensorBoard overlays them on one chart.
  assert set(tags["dropout-seed1/train"]) == set(tags["dropout-seed1/validation"]) == {
      "epoch_loss", "epoch_accuracy"}
  assert set(tags["no_dropout-mean"]) >= {"Loss", "Accuracy/Validation"}
  # Within epochs: digits' 15 steps an epoch are 15 runs of one step, at steps 1..30.
  assert set(tags["dropout-seed1/steps"]) == {"StepLoss"}
  points = get("/data/plugin/scalars/scalars?run=dropout-seed1/steps&tag=StepLoss")
  assert [p[1] for p in points] == list(range(1, 31))
  res = json.load(open(board[0] / "results.json"))
  h = next(v for v in res["variants"] if v["name"] == "dropout")["per_seed"][1]
  # The epoch's loss is the mean of its steps' (equal batches but the last, of 1437 - 14 * 96).
  weights = [96] * 14 + [1437 - 14 * 96]
  for e in (0, 1):
    mean = np.average([p[2] for p in points[15 * e:15 * (e + 1)]], weights=weights)
    assert mean == pytest.approx(h["train_loss"][e], rel=1e-5)


def test_hparams_lists_the_columns_that_differ_and_each_runs_values_and_status(board):
  _, get = board
  exp = get("/data/plugin/hparams/experiment", {"experimentName": ""})
  infos = {h["name"]: h for h in exp["hparamInfos"]}
  assert set(infos) == {"variant", "dropout", "seed"}  # the constant fields stay out
  assert all(h["differs"] for h in infos.values())
  assert sorted(infos["variant"]["domainDiscrete"]) == ["dropout", "no_dropout"]
  assert {m["name"]["tag"] for m in exp["metricInfos"]} == {"Accuracy/Validation",
                                                             "Loss/Validation"}
  groups = get("/data/plugin/hparams/session_groups", {
      "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS",
                                                "STATUS_FAILURE", "STATUS_RUNNING"],
      "colParams": [], "startIndex": 0, "sliceSize": 100})
  sessions = {g["name"]: g for g in groups["sessionGroups"]}
  assert len(sessions) == 2 * SEEDS
  g = sessions["dropout-seed2"]
  assert (g["hparams"]["variant"], g["hparams"]["dropout"], g["hparams"]["seed"]) == (
      "dropout", 0.5, 2)
  assert {s["status"] for g in sessions.values() for s in g["sessions"]} == {"STATUS_SUCCESS"}
  acc = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}["Accuracy/Validation"]
  res = json.load(open(board[0] / "results.json"))
  final = next(v for v in res["variants"] if v["name"] == "dropout")["per_seed"][2]
  assert acc == pytest.approx(final["val_accuracy"][-1])


def test_images_and_text_hold_the_pictures_the_summary_and_the_config(board):
  wd, get = board
  images = get("/data/plugin/images/tags")["."]
  assert set(images) == {"comparison", "confusion", "predictions", "augmented"}
  first = get("/data/plugin/images/images?run=.&tag=confusion")[0]
  png = get("/data/plugin/images/individualImage?" + first["query"])
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  assert set(get("/data/plugin/text/tags")["."]) == {"summary/text_summary",
                                                     "config/text_summary"}
  text = get("/data/plugin/text/text?run=.&tag=summary/text_summary")[0]["text"]
  assert "dropout improves validation accuracy" in text  # the claims table, as HTML
  assert "<td><strong>inconclusive</strong></td>" in text and "<h1>dropout</h1>" in text


def test_the_histograms_are_tflearns_level_3(board):
  wd, get = board
  tags = set(get("/data/plugin/histograms/tags")["no_dropout-seed0"])
  layers = {"conv0_0", "conv1_0", "conv1_1", "fc0", "head"}
  assert tags == ({f"Gradients/{n}/{p}" for n in layers for p in ("kernel", "bias")}
                  | {f"Weights/{n}/{p}" for n in layers for p in ("kernel", "bias")}
                  | {f"Activations/{n}" for n in layers})
  points = get("/data/plugin/histograms/histograms?run=no_dropout-seed0&tag=Weights/fc0/kernel")
  assert [p[1] for p in points] == [1, 2]  # one per epoch
  buckets = points[-1][2]  # [left, right, count] each
  assert sum(b[2] for b in buckets) == 2 * 2 * 64 * 512  # fc0's kernel on 8x8 digits
  assert buckets[0][0] < 0 < buckets[-1][1]


def _member(net="conv4-pool-fc8", **kw):
  config = Config(name="t", dataset="digits", net=net, **kw)
  model = models.make_model(config, 10)
  x = jax.random.normal(jax.random.PRNGKey(1), (16, 8, 8, 1))
  y = jnp.arange(16) % 10
  tx = optim.make_optimizer("sgd", "constant", 10, 0.9, 1.0, 0)
  hp = {k: jnp.asarray([v]) for k, v in
        {"learning_rate": 0.1, "dropout": 0.0, "l2": 0.0, "l1": 0.0,
         "weight_decay": 0.0}.items()}
  states = member_state.init_states(model, tx, x[:1], {**hp, "seed": jnp.asarray([0])})
  return model, states, x, y


def test_each_level_adds_tflearns_next_kind_and_the_numbers_are_the_tensors():
  model, states, x, y = _member()
  params = jax.tree.map(lambda a: a[0], states.params)
  kinds = lambda out: {k.split("/")[0] for k in out}  # noqa: E731
  outs = {lv: tb_detail.make_probe(model, "xent", lv)(states, x, y) for lv in (1, 2, 3)}
  assert kinds(outs[1]) == {"Gradients"}
  assert kinds(outs[2]) == {"Gradients", "Weights"}
  assert kinds(outs[3]) == {"Gradients", "Weights", "Activations", "Sparsity"}
  out = outs[3]
  # Weights: the parameter's own histogram (numpy's, over its min..max).
  w = np.asarray(params["fc0"]["kernel"]).ravel()
  s = jax.tree.map(lambda a: np.asarray(a[0]), out["Weights/fc0/kernel"])
  counts, edges = np.histogram(w, bins=tb_detail.BUCKETS, range=(w.min(), w.max()))
  np.testing.assert_array_equal(s["counts"], counts)
  np.testing.assert_allclose(s["limits"], edges[1:], atol=1e-7)  # float32 edges
  assert (s["num"], s["min"], s["max"]) == (w.size, w.min(), w.max())
  np.testing.assert_allclose([s["sum"], s["sum_squares"]], [w.sum(), (w * w).sum()], rtol=1e-5)
  # Gradients: the probe loss's gradient, computed here apart.
  loss = lambda p: jnp.mean(losses.per_example_loss("xent", model.apply({"params": p}, x), y))
  g = np.asarray(jax.grad(loss)(params)["conv0_0"]["kernel"]).ravel()
  sg = jax.tree.map(lambda a: np.asarray(a[0]), out["Gradients/conv0_0/kernel"])
  np.testing.assert_allclose([sg["min"], sg["max"], sg["sum"]], [g.min(), g.max(), g.sum()],
                             rtol=1e-4, atol=1e-7)
  # Sparsity: the share of the conv's outputs its ReLU zeroes.
  conv = jax.lax.conv_general_dilated(x, params["conv0_0"]["kernel"], (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  conv = conv + params["conv0_0"]["bias"].reshape(1, 1, 1, -1)
  assert float(out["Sparsity/conv0_0"][0]) == pytest.approx(float(np.mean(conv <= 0)))
  assert "Sparsity/head" not in out  # the logits meet no ReLU
  # A zero bias (a constant tensor) is one full bucket, not NaN.
  b = jax.tree.map(lambda a: np.asarray(a[0]), out["Weights/conv0_0/bias"])
  assert b["counts"].sum() == 4 and np.isfinite(b["limits"]).all()


def test_with_batchnorm_the_sparsity_is_of_what_enters_the_relu():
  model, states, x, y = _member(batch_norm=True)
  out = tb_detail.make_probe(model, "xent", 3)(states, x, y)
  assert "Sparsity/bn0_0" in out and "Sparsity/conv0_0" not in out and "Sparsity/fc0" in out


def test_verbose_levels_are_refused_outside_0_to_3():
  from dl101_jax.config import ConfigError
  from dl101_jax.host.chunks import chunk_length

  for bad in (-1, 4):
    with pytest.raises(ConfigError, match=r"--tensorboard-verbose: must be 0, 1, 2 or 3"):
      Config(name="t", dataset="digits", net="fc8", tensorboard_verbose=bad)
  c = Config(name="t", dataset="digits", net="fc8", epochs=10, log_every=5, checkpoint_every=5)
  assert chunk_length(c) == 5 and chunk_length(c.replace(tensorboard_verbose=1)) == 1


def test_chunk_means_are_each_runs_per_example_mean():
  metrics = {"loss": jnp.asarray([1.0, 2.0, 3.0, 4.0, 5.0]),
             "count": jnp.asarray([2.0, 2.0, 2.0, 2.0, 1.0])}
  # 5 steps in 2 runs: steps 0-2 (s * 2 // 5 = 0) and 3-4.
  np.testing.assert_allclose(train.chunk_means(metrics, 2), [2.0, (8 + 5) / 3])
  np.testing.assert_allclose(train.chunk_means(metrics, 20), [1, 2, 3, 4, 5])  # one per step


def test_step_loss_is_drawn_where_each_run_of_steps_ends():
  class Run:
    def __init__(self):
      self.points = []

    def log_scalar(self, step, tag, value, sub=""):
      self.points.append((sub, tag, step, value))

  tb = {0: Run(), 1: Run(), 2: Run()}
  chunks_ExMxK = np.arange(2 * 2 * 2, dtype=float).reshape(2, 2, 2)  # 2 epochs, 2 alive, 2 runs
  # Members 0 and 2 alive (in that order); 2 just diverged; epochs 4 and 5 of 5 steps each.
  tb_detail.log_chunk_losses(tb, chunks_ExMxK, [0, 2], 4, 5, dead=[2])
  assert tb[0].points == [("steps", "StepLoss", s, v)
                          for s, v in ((18, 0.0), (20, 1.0), (23, 4.0), (25, 5.0))]
  assert tb[1].points == tb[2].points == []
