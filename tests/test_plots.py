"""comparison.png says what it draws: titles, whole epochs, plain loss labels, seeds, step axis."""

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
