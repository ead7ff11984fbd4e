"""The pictures say what they draw: comparison.png's titles, whole epochs, plain loss labels,
seeds and step axis; predictions.png's images and labels."""

import numpy as np

from dl101_jax.host import plots


def _results(experiment, seeds):
  def hist(scale):
    return {"epoch": [1, 2, 3], "step": [s * scale for s in (1, 2, 3)], "seconds": [1.0, 2.0, 3.0],
            "train_loss": [2.0, 1.5, 1.2], "train_accuracy": [0.3, 0.4, 0.5],
            "val_loss": [1.9, 1.6, 1.4], "val_accuracy": [0.35, 0.45, 0.5]}
  variants = [{"name": n, "seeds": seeds, "diverged": False, "diverged_epoch": None,
               "history": hist(k), "per_seed": [hist(k)] * seeds}
              for n, k in (("batch_50", 200), ("batch_2000", 5))]
  return {"experiment": experiment, "dataset": {"name": "cifar10", "train_size": 10, "test_size": 2},
          "variants": variants}


def _figure(monkeypatch, results):
  drawn = {}
  monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig))
  plots.comparison(results, "unused.png")
  return drawn["fig"]


def test_titles_ticks_and_labels(monkeypatch):
  fig = _figure(monkeypatch, _results("dropout", 1))
  acc, loss = fig.axes[:2]
  assert acc.get_title() == "Accuracy: validation (solid) and training (dashed), by epoch"
  fig.canvas.draw()
  ticks = [t for t in acc.get_xticks() if acc.get_xlim()[0] <= t <= acc.get_xlim()[1]]
  assert ticks and all(float(t).is_integer() for t in ticks)  # whole epochs
  labels = [t.get_text() for t in loss.get_yticklabels() + loss.get_yticklabels(minor=True)]
  assert labels and not any("times" in l or "^" in l or "×" in l for l in labels), labels
  assert fig._suptitle.get_text().endswith(", 1 seed")


def test_several_seeds_and_the_batch_size_step_axis(monkeypatch):
  fig = _figure(monkeypatch, _results("batch_size", 3))
  assert fig._suptitle.get_text().endswith("mean ± std over 3 seeds")
  by_step = [ax for ax in fig.axes if ax.get_xlabel() == "training step"]
  assert len(by_step) == 2 and all(ax.get_xscale() == "log" for ax in by_step)
  assert np.isclose(min(ax.get_xlim()[0] for ax in by_step), 5, rtol=0.5)  # batch_2000 visible


def test_the_augmented_sample_shows_each_image_above_its_draw():
  import dataclasses

  from dl101_jax.config import Config
  from dl101_jax.host import tb_pages

  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
  plain = Config(flip=False, rotate=0.0)
  assert tb_pages.augmented_samples(x, plain) is None  # nothing to show
  grid = tb_pages.augmented_samples(x, dataclasses.replace(plain, flip=True))
  assert grid.shape == (2 * 68, 8 * 68, 3) and grid.dtype == np.uint8  # 34 px framed, x2
  cell = lambda r, c: grid[r * 68 + 2:(r + 1) * 68 - 2, c * 68 + 2:(c + 1) * 68 - 2]  # noqa: E731
  flipped = 0
  for c in range(8):
    top, bottom = cell(0, c), cell(1, c)
    assert np.array_equal(bottom, top) or np.array_equal(bottom, top[:, ::-1])
    flipped += not np.array_equal(bottom, top)
  assert 0 < flipped < 8  # flips are drawn per image


def test_a_mean_run_follows_the_seeds_and_goes_when_one_seed_is_left(tmp_path):
  from dl101_jax.host import tb_pages
  from helpers import read_scalars

  history = {"epoch": [1, 2], "train_loss": [2.0, 1.0], "train_accuracy": [0.1, 0.2],
             "val_loss": [2.5, 1.5], "val_accuracy": [0.2, 0.3]}
  v = {"name": "a", "seeds": 2, "history": history}
  assert tb_pages.write_mean_runs(str(tmp_path), [v]) == [str(tmp_path / "a-mean")]
  got = read_scalars(str(tmp_path / "a-mean"))
  assert [(e, round(x, 6)) for e, x in got["Accuracy/Validation"]] == [(1, 0.2), (2, 0.3)]
  assert [x for _, x in read_scalars(str(tmp_path / "a-mean" / "train"))["epoch_loss"]] == [2, 1]
  # Run again with one seed: no mean to show, and the old one is not left behind.
  assert tb_pages.write_mean_runs(str(tmp_path), [{**v, "seeds": 1}]) == []
  assert not (tmp_path / "a-mean").exists()


def test_predictions_draw_each_image_with_its_label_and_the_wrong_ones_in_red(tmp_path):
  import matplotlib.image

  rng = np.random.default_rng(0)
  x_NxHxWxC = np.repeat(rng.integers(0, 256, (10, 8, 8, 1), dtype=np.uint8), 3, -1)  # grey
  x_NxHxWxC[3] = [0, 0, 255]  # one pure blue tile, to be found in the picture
  y_N, pred_N = np.arange(10) % 4, np.arange(10) % 4
  path = tmp_path / "p.png"
  plots.predictions(x_NxHxWxC, y_N, pred_N, ["a", "b", "c", "d"], "t", str(path))
  rgb = matplotlib.image.imread(path)[..., :3]
  red = (rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
  blue = (rgb[..., 2] > 0.95) & (rgb[..., :2].max(-1) < 0.05)
  assert not red.any() and blue.sum() > 8 * 8  # all right: no red; the tile drawn enlarged
  pred_N[5] = 0
  plots.predictions(x_NxHxWxC, y_N, pred_N, ["a", "b", "c", "d"], "t", str(path))
  rgb = matplotlib.image.imread(path)[..., :3]
  red = (rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
  assert red.sum() > 20  # the one wrong label, "a (true: b)", in red
