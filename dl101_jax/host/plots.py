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


def sweep(points: list[dict], axes_names: list[str], path: str) -> None:
  """Validation accuracy against each swept axis, with error bars over seeds."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(axes_names), figsize=(5.5 * len(axes_names), 4.2),
                           squeeze=False)
  for ax, name in zip(axes[0], axes_names):
    others = [a for a in axes_names if a != name]
    series: dict[tuple, list[dict]] = {}
    for p in points:
      series.setdefault(tuple(p[o] for o in others), []).append(p)
    for key, pts in series.items():
      pts = sorted(pts, key=lambda p: p[name])
      label = ", ".join(f"{o}={v:g}" for o, v in zip(others, key)) or "val acc"
      ax.errorbar([p[name] for p in pts], [p["val_accuracy"] for p in pts],
                  yerr=[p["val_accuracy_std"] for p in pts], marker="o", capsize=3, label=label)
    if name in ("learning_rate", "weight_decay") and all(p[name] > 0 for p in points):
      ax.set_xscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel("final validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle("Sweep: mean ± std over seeds")
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def lr_find(block: dict, path: str) -> None:
  """Validation loss against the learning rate (log axis), seeds as dots, diverged rates as
  crosses at the top, the suggested rate marked."""
  import numpy as np

  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  rates, losses = block["rates"], block["val_loss"]
  kept = [(r, v) for r, v in zip(rates, losses) if v is not None]
  if kept:
    ax.plot(*zip(*kept), marker="o", label=f"mean over {block['seeds']} seed(s)")
  for r, seeds in zip(rates, block["val_loss_per_seed"]):
    ax.scatter([r] * len(seeds), [s if s is not None else np.nan for s in seeds], s=12,
               color="gray", alpha=0.6)
  top = max((v for _, v in kept), default=1.0)
  gone = [r for r, v in zip(rates, losses) if v is None]
  if gone:
    ax.scatter(gone, [top] * len(gone), marker="x", color="red", label="diverged")
  if block["suggested"] is not None:
    ax.axvline(block["suggested"], color="green", ls="--",
               label=f"suggested {block['suggested']:.3g}")
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel(f"validation loss after {block['epochs']} epoch(s)")
  ax.set_title("Learning-rate finder: one short run per rate, all in one program")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=9)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


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
  """A grid of validation images with predicted and true class; misclassified in red."""
  plt = _plt()
  n = len(pred_N)
  cols = 8
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.75), squeeze=False)
  for k, ax in enumerate(axes.ravel()):
    ax.axis("off")
    if k >= n:
      continue
    img = x_NxHxWxC[k]
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1
              else None, interpolation="nearest")
    ok = int(pred_N[k]) == int(y_N[k])
    label = names[int(pred_N[k])] + ("" if ok else f"\n(true: {names[int(y_N[k])]})")
    ax.set_title(label, fontsize=8, color="black" if ok else "red")
  wrong = sum(int(p) != int(t) for p, t in zip(pred_N, y_N))
  fig.suptitle(f"Predictions on validation images: {title}; {wrong} of {n} wrong (red)")
  # Fixed margins: tight_layout over 32 axes cost about a second per picture.
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.8 / (rows * 1.75),
                      wspace=0.1, hspace=0.55)
  _save(fig, path)
  plt.close(fig)


def search(block: dict, histories: list[dict], path: str) -> None:
  """Validation accuracy per member over epochs, each epoch's segment coloured by the
  learning rate it trained with; PBT copies drawn from donor to copier, halving's
  stops marked x, the winner thick."""
  plt = _plt()
  from matplotlib import cm, colors
  from matplotlib.collections import LineCollection
  from matplotlib.ticker import MaxNLocator

  lo, hi = block["space"]["learning_rate"]
  norm = colors.LogNorm(lo, hi if hi > lo else lo * 10)
  cmap = plt.get_cmap("viridis")
  fig, ax = plt.subplots(figsize=(10, 5.5))
  for i, (m, h) in enumerate(zip(block["population"], histories)):
    ep, acc = h["epoch"], h["val_accuracy"]
    if not ep:
      continue
    lr = dict(zip(m["hparams"]["epoch"], m["hparams"]["learning_rate"]))
    # The segment into epoch e (and its dot) takes the colour of the rate epoch e trained with.
    segs = [[(ep[k - 1], acc[k - 1]), (ep[k], acc[k])] for k in range(1, len(ep))]
    win = m["name"] == block["winner"]["name"]
    c = [cmap(norm(lr[e])) for e in ep]
    ax.add_collection(LineCollection(segs, colors=c[1:], linewidths=3 if win else 1.2,
                                     zorder=3 if win else 2))
    ax.scatter(ep, acc, c=c, s=14 if win else 6, zorder=3)
    if m["stopped_at"]:
      ax.plot(ep[-1], acc[-1], "x", color="black", markersize=7)
    for ev in m["lineage"]:
      donor = histories[ev["copied"]]
      e = ev["epoch"]
      ax.annotate("", xy=(e, acc[ep.index(e)]), xytext=(e, donor["val_accuracy"][
          donor["epoch"].index(e)]), arrowprops={"arrowstyle": "->", "color": "grey",
                                                   "lw": 0.8, "alpha": 0.7})
  ax.autoscale()
  ax.set_xlim(left=0.5)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="learning rate")
  n = len(block["population"])
  what = {"pbt": "grey arrows: a member copies a better one's weights (exploit), then "
                 "perturbs its hyperparameters (explore)",
          "halving": f"x: stopped at a rung (top 1/{block['eta']} kept)",
          "grid": "every member trains to the end"}[block["method"]]
  ax.set_title(f"{block['method']}: {n} members, {block['member_epochs']} member-epochs; "
               f"winner thick\n{what}", fontsize=10)
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation accuracy (held out of training)")
  ax.grid(alpha=0.3)
  _save(fig, path)
  plt.close(fig)


def schedule(block: dict, path: str) -> None:
  """The winner's hyperparameters per epoch, along the line of weights it inherited."""
  plt = _plt()
  from matplotlib.ticker import MaxNLocator

  rows = block["winner"]["schedule"]
  names = list(block["space"])
  # Two columns, so that at the size it is written (about 1000 px wide) the text reads.
  cols = min(2, len(names))
  grid = -(-len(names) // cols)
  fig, axes = plt.subplots(grid, cols, figsize=(5.0 * cols, 3.3 * grid), layout="constrained",
                           squeeze=False)
  for ax in axes.flat[len(names):]:
    ax.set_visible(False)
  ep = [r["epoch"] for r in rows]
  for ax, k in zip(axes.flat, names):
    ax.step(ep, [r[k] for r in rows], where="mid", color="C0")
    ax.plot(ep, [r[k] for r in rows], ".", color="C0")
    for a, b in zip(rows, rows[1:]):
      if a["member"] != b["member"]:  # weights came from another member here
        ax.axvline(a["epoch"] + 0.5, color="grey", linestyle=":", lw=1)
    if k == "learning_rate":
      ax.set_yscale("log")
    ax.set_title(k.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
  fig.suptitle(f"{block['winner']['name']} ({block['method']}): its hyperparameters per epoch"
               + ("; dotted: weights inherited from another member" if block["method"] == "pbt"
                  else ""), fontsize=11)
  _save(fig, path)
  plt.close(fig)


VERDICT_COLORS = {"supported": "tab:green", "contradicted": "tab:red",
                  "inconclusive": "tab:gray", None: "tab:blue"}


def ladder(rows: list[dict], path: str) -> None:
  """One bar per rung: final validation accuracy (mean over seeds), each seed a dot, the
  bar coloured by its gain's verdict and labelled with the gain over its baseline."""
  plt = _plt()
  from matplotlib.patches import Patch

  shown = [r for r in rows if r["val_accuracy"] is not None]
  fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(shown) + 2), 4.6))
  for i, r in enumerate(shown):
    ax.bar(i, r["val_accuracy"], color=VERDICT_COLORS[r["verdict"]], alpha=0.75, width=0.7)
    seeds = r["val_accuracy_per_seed"]
    ax.plot([i] * len(seeds), seeds, "o", color="black", markersize=4)
    if r["gain"] is not None:
      ax.annotate(f"{r['gain']:+.3f}", (i, max(seeds)), xytext=(0, 4),
                  textcoords="offset points", ha="center", fontsize=9)
  accs = [a for r in shown for a in r["val_accuracy_per_seed"]]
  if accs:
    ax.set_ylim(max(0.0, min(accs) - 0.08), min(1.0, max(accs) + 0.05))
  names = [r["rung"] + (f"\nvs {r['vs']}" if r.get("vs") else "") for r in shown]
  ax.set_xticks(range(len(shown)), names, rotation=30, ha="right", fontsize=9)
  ax.set_ylabel("validation accuracy, final epoch")
  ax.set_title("The ladder: each rung's gain over the one before, judged over seeds")
  ax.grid(axis="y", alpha=0.3)
  ax.legend(handles=[Patch(color=VERDICT_COLORS[v], alpha=0.75, label=v or "first rung")
                     for v in ("supported", "inconclusive", "contradicted", None)],
            loc="upper left", fontsize=8)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
