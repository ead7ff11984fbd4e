"""Pictures that answer an experiment's question (matplotlib, Agg backend)."""

from __future__ import annotations

from dl101_jax.host.report import over_seeds


def _plt():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt



def comparison(results: dict, path: str) -> None:
  """Validation accuracy and loss per epoch, mean +- std over seeds; training dashed.

  Experiments about batch size also get the same curves against training
  steps and wall-clock seconds.
  """
  plt = _plt()
  has_val = any(v["history"].get("val_accuracy") for v in results["variants"])
  x_keys = [("epoch", "epoch")]
  if results["experiment"] == "batch_size":
    x_keys += [("step", "training step"), ("seconds", "wall-clock seconds")]
  fig, axes = plt.subplots(len(x_keys), 2, figsize=(12, 4.2 * len(x_keys)), squeeze=False)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for row, (x_key, x_label) in enumerate(x_keys):
    for col, what in enumerate(("accuracy", "loss")):
      ax = axes[row][col]
      for k, v in enumerate(results["variants"]):
        _curves(ax, v, what, x_key, has_val, colors[k % len(colors)])
      _style(ax, what, x_key, x_label, has_val)
  d = results["dataset"]
  seeds = max(v["seeds"] for v in results["variants"])
  spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
  fig.suptitle(f"{results['experiment']}: {d['name']} ({d['train_size']} train / "
               f"{d['test_size']} test), {spread}")
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def _curves(ax, v: dict, what: str, x_key: str, has_val: bool, c: str) -> None:
  """One variant's curves of `what` against `x_key`: validation solid (with its spread over
  seeds), training dashed, an x where it diverged."""
  label = v["name"] + (f" (diverged @ {v['diverged_epoch']})" if v["diverged"] else "")
  if has_val:
    x, mu, sd = over_seeds(v["per_seed"], f"val_{what}", x_key)
    if len(x):  # a few epochs: dots too, so that two-point curves read as points
      ax.plot(x, mu, color=c, label=f"{label} val", marker="o" if len(x) <= 12 else "",
              markersize=3)
      if v["seeds"] > 1:
        ax.fill_between(x, mu - sd, mu + sd, color=c, alpha=0.2)
  x, mu, _ = over_seeds(v["per_seed"], f"train_{what}", x_key)
  if len(x):
    ax.plot(x, mu, color=c, linestyle="--", label=f"{label} train",
            marker="o" if len(x) <= 12 else "", markersize=3)
  if v["diverged"] and len(x):
    ax.plot(x[-1], mu[-1], "x", color=c, markersize=10)


def _style(ax, what: str, x_key: str, x_label: str, has_val: bool) -> None:
  from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

  ax.set_xlabel(x_label)
  ax.set_ylabel(what)
  drawn = "validation (solid) and training (dashed)" if has_val else "training"
  ax.set_title(f"{what.capitalize()}: {drawn}, by {x_label}")
  ax.grid(alpha=0.3)
  if x_key == "epoch":
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  elif x_key == "step":
    ax.set_xscale("log")  # batch 2000's few steps per epoch stay visible beside batch 50's
  if what == "loss":
    # Log scale, labelled in plain decimals (0.5, 1, 2), never as 2×10⁰.
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    lo, hi = ax.get_ylim()
    # Minor labels only within a decade: over several they pile up near 1 and 0.1.
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: f"{y:g}") if hi / lo < 10
                                 else NullFormatter())
  ax.legend(fontsize=8)


def _save(fig, path: str) -> None:
  """Write the PNG under a temporary name, then rename: never a half-written picture."""
  from dl101_jax.host.files import atomic_path

  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=110)


def confusion(errors: dict, path: str) -> None:
  """The best variant's confusion matrix, row-normalized, class names on both axes."""
  plt = _plt()
  import numpy as np

  counts_KxK = np.asarray(errors["confusion"], float)
  frac_KxK = counts_KxK / np.maximum(counts_KxK.sum(axis=1, keepdims=True), 1)
  names = errors["classes"]
  fig, ax = plt.subplots(figsize=(7.5, 6.5))
  im = ax.imshow(frac_KxK, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
  ax.set_yticks(range(len(names)), names)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  for i in range(len(names)):
    for j in range(len(names)):
      ax.text(j, i, f"{frac_KxK[i, j]:.2f}", ha="center", va="center", fontsize=7,
              color="white" if frac_KxK[i, j] > 0.5 else "black")
  fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
  ax.set_title(f"Confusion on the validation split: {errors['best_variant']} "
               f"(rows sum to 1; seeds summed)")
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def predictions(x_NxHxWxC, y_N, pred_N, names: list[str], title: str, path: str) -> None:
  """A grid of validation images with predicted and true class; misclassified in red.

  One image of all the tiles, each label a text above its tile: 32 axes of one image each
  took over twice as long to draw (0.4 s against 0.15 s on the 2-core CPU), in every run.
  """
  plt = _plt()
  import numpy as np

  n, cols = len(pred_N), 8
  rows = -(-n // cols)
  x_NxHxWxC = np.asarray(x_NxHxWxC[:n])
  if x_NxHxWxC.dtype == np.uint8:
    x_NxHxWxC = x_NxHxWxC / 255.0
  x_NxHxWx3 = np.clip(np.broadcast_to(x_NxHxWxC, (*x_NxHxWxC.shape[:3], 3)), 0, 1)
  h, w = x_NxHxWx3.shape[1:3]
  gap_x, gap_y = max(1, round(w * 0.12)), max(2, round(h * 0.55))  # room for 2 lines of label
  mosaic = np.ones((rows * (h + gap_y), cols * (w + gap_x) - gap_x, 3))  # white between tiles
  width = cols * 1.5  # inches; the height follows the mosaic's shape, plus 0.6 for the title
  height = width * 0.98 * mosaic.shape[0] / mosaic.shape[1]
  fig = plt.figure(figsize=(width, height + 0.6))
  ax = fig.add_axes((0.01, 0.1 / (height + 0.6), 0.98, height / (height + 0.6)))
  ax.axis("off")
  for k in range(n):
    top, left = (k // cols) * (h + gap_y) + gap_y, (k % cols) * (w + gap_x)
    mosaic[top:top + h, left:left + w] = x_NxHxWx3[k]
    ok = int(pred_N[k]) == int(y_N[k])
    label = names[int(pred_N[k])] + ("" if ok else f"\n(true: {names[int(y_N[k])]})")
    ax.text(left + w / 2 - 0.5, top - 0.5 - gap_y * 0.05, label, ha="center", va="bottom",
            fontsize=8, color="black" if ok else "red")
  ax.imshow(mosaic, interpolation="nearest")
  wrong = sum(int(p) != int(t) for p, t in zip(pred_N, y_N))
  fig.suptitle(f"Predictions on validation images: {title}; {wrong} of {n} wrong (red)")
  _save(fig, path)
  plt.close(fig)
