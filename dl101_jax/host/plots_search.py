"""Pictures of a search over hyperparameters (matplotlib, Agg backend): a sweep's grid, the
learning-rate finder's curve, a population's members and PBT's schedule, the ladder's rungs.

Apart from plots.py (an experiment's own pictures), whose figure helpers they share.
"""

from __future__ import annotations

from dl101_jax.host.plots import _plt, _save


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
