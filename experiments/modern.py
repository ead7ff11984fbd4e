"""Past the tutorial: from its dropout net to airbench94's recipe, one change per rung.

    python -m experiments.modern                                   # the full recipe, full CIFAR-10
    python -m experiments.modern --data-dir DATA_DIR --train-size 10000 --seeds 2 \\
        --variants tutorial,batchnorm,nesterov,label_smoothing,airbench_aug,airbench_net,airbench94
                                                                   # the ladder

The rungs (each row of the ladder changes one thing from the row above):
  tutorial         the tutorial's dropout net, Adam 1e-3, batch 96, flips and +-25 degree rotations.
  batchnorm        + BatchNorm after every conv.
  nesterov         + Nesterov SGD (lr 0.1, momentum 0.9, decay 5e-4) with airbench's warmup-
                   linear schedule, instead of Adam.
  label_smoothing  + label smoothing 0.2.
  airbench_aug     + airbench's augmentation: alternating flips and 2-pixel translations, no
                   rotation.
  airbench_net     + airbench94's network (whitening conv, 64/256/256 blocks, GELU) with its
                   optimizer settings: batch 1024, lr 1.5 (for a mean loss), momentum 0.85, decay
                   1.33e-3 on every parameter (airbench's 0.002 per step, as lr x decay),
                   BatchNorm shifts at 64x the lr, the whitening bias frozen after 3 epochs;
                   PyTorch's inits, each conv's first filters the identity.
  + lookahead      + airbench's Lookahead every 5 steps (variant airbench94); the slow weights,
                   with BatchNorm statistics averaged alongside, are evaluated.
  + tta            + test-time augmentation (mirror and one-pixel shifts): airbench94's recipe.
The last two rows are one training run (variant airbench94): TTA changes only what is
evaluated, so its final weights are scored twice (results.json: "ladder").
After the recipe, opt-in, each compared with airbench94 (+ tta):
  muon             airbench94_muon's recipe: Muon on the conv filters (optax.contrib), batch
                   2000, 8 epochs, lrs falling linearly to 0, its head, no Lookahead.
  cutout           + airbench96's cutout: a 12x12 square of each training image set to the mean.

Cost on a 2-core CPU: the full recipe on 50k images ~41 min of training; the ladder on
the 10k subset, 2 seeds, ~85 min; there, muon ~11 min and 12.7 GB per seed, cutout ~30 min. Measured results: docs/results/modern_clean.* and
docs/results/modern_ladder.*, with their commands in the README.

Not airbench94 exactly: the last batch of an epoch is padded (masked), not dropped; 10
epochs, not 9.9; float32 on CPU, not float16.
"""

import math
import os

import numpy as np

from dl101_jax.host import cli, files
from dl101_jax import verdict
from dl101_jax.config import Config, ConfigError
from dl101_jax.host.evaluation import evaluate_members
from dl101_jax.host.experiment import Results, run_experiment

NET = "conv32-pool-conv64-conv64-pool-fc512"
CONFIG = Config(name="modern", dataset="cifar10", net=NET, epochs=10, norm="per_channel")
TUTORIAL = {"dropout": 0.5}
BATCHNORM = {**TUTORIAL, "batch_norm": True}
NESTEROV = {**BATCHNORM, "optimizer": "nesterov", "learning_rate": 0.1, "weight_decay": 5e-4,
            "schedule": "warmup_linear"}
LABEL_SMOOTHING = {**NESTEROV, "label_smoothing": 0.2}
AIRBENCH_AUG = {**LABEL_SMOOTHING, "rotate": 0.0, "translate": 2, "alternate_flip": True}
# airbench94's own net and optimizer settings.
AIRBENCH_NET = {**AIRBENCH_AUG, "net": "airbench", "dropout": 0.0, "batch_norm": False,
                "batch_size": 1024, "learning_rate": 1.5, "momentum": 0.85,
                "weight_decay": 1.33e-3, "norm_bias_lr": 64.0, "whiten_bias_epochs": 3}
# The full recipe: + Lookahead, + test-time augmentation (evaluation only).
AIRBENCH94 = {**AIRBENCH_NET, "lookahead": 5, "tta": 2}
# After airbench94, each compared with it. airbench94_muon.py's recipe, in a mean loss's units
# (its lrs are for a loss summed over the batch of 2000): Muon at 0.24 on the conv filters,
# Nesterov (0.85) at 0.67 x 2000 on the head and 0.053 x 2000 on the biases (whitening and
# BatchNorm shifts), decay 2e-6 x 2000 per step on those (as lr x decay), every lr falling
# linearly to 0 (the whitening bias's over 3 epochs), its head, 8 epochs, no Lookahead.
MUON = {**AIRBENCH94, "net": "airbench_muon", "optimizer": "muon", "muon_lr": 0.24,
        "learning_rate": 0.67 * 2000, "norm_bias_lr": 0.053 / 0.67, "momentum": 0.85,
        "weight_decay": 2e-6 * 2000 / (0.67 * 2000), "batch_size": 2000, "epochs": 8,
        "schedule": "linear", "lookahead": 0}
CUTOUT = {**AIRBENCH94, "cutout": 12}  # airbench96's cutout, on airbench94
VARIANTS = {"airbench94": AIRBENCH94}  # no flags: the full recipe
OPT_IN = {"tutorial": TUTORIAL, "batchnorm": BATCHNORM, "nesterov": NESTEROV,
          "label_smoothing": LABEL_SMOOTHING, "airbench_aug": AIRBENCH_AUG,
          "airbench_net": AIRBENCH_NET, "muon": MUON, "cutout": CUTOUT}
LADDER = ("tutorial", "batchnorm", "nesterov", "label_smoothing", "airbench_aug", "airbench_net")
AFTER = ("muon", "cutout")  # rungs after the full recipe, each against "+ tta"
CIFAR_ONLY = ("airbench_net", "airbench94", *AFTER)  # airbench's network: 32x32 images


def scored(results: Results, variant: str, *, tta: int) -> list[float]:
  """Final validation accuracy of each seed of `variant` (the weights it evaluates: slow
  ones with Lookahead), at test-time augmentation level `tta` (one jitted pass)."""
  for g in results.groups:
    acc = evaluate_members(g, results.data, variant=variant, tta=tta)["accuracy"]
    if len(acc):
      return [float(a) for a in acc]
  return []


def seeds(variant: dict) -> list[int]:
  """The seeds of a results.json variant that have a final validation accuracy."""
  first = variant["config"]["effective"]["seed"]
  return [first + i for i, h in enumerate(variant["per_seed"]) if h["val_accuracy"]]


def ladder(results: Results) -> dict:
  """results.json's "ladder": one row per rung, its mean accuracy, gain and cost."""
  by_name = {v["name"]: v for v in results.json["variants"]}
  rows = []
  for name in LADDER:
    if name in by_name:
      v = by_name[name]
      rows.append({"rung": name, "val_accuracy_per_seed": [h["val_accuracy"][-1] for h in
                                                           v["per_seed"] if h["val_accuracy"]],
                   "seeds": seeds(v), "seconds": v["wall_seconds"]})
  if "airbench94" in by_name:
    seconds = by_name["airbench94"]["wall_seconds"]
    for rung, tta in (("+ lookahead", 0), ("+ tta", 2)):
      accs = scored(results, "airbench94", tta=tta)
      same = seeds(by_name["airbench94"])
      rows.append({"rung": rung, "val_accuracy_per_seed": accs,
                   "seeds": same if len(same) == len(accs) else None,
                   "seconds": seconds if tta == 0 else 0.0})
  for name in AFTER:
    if name in by_name and "airbench94" in by_name:
      v = by_name[name]
      epochs = by_name["airbench94"]["config"]["effective"]["epochs"]
      rows.append({"rung": name, "val_accuracy_per_seed": [h["val_accuracy"][-1] for h in
                                                           v["per_seed"] if h["val_accuracy"]],
                   "seeds": seeds(v), "seconds": v["wall_seconds"],
                   "epochs": v["config"]["effective"]["epochs"], "baseline": "+ tta", "vs": f"airbench94 at {epochs} epochs"})
  return {"ladder": compare_rungs(rows)}


def compare_rungs(rows: list[dict]) -> list[dict]:
  """Each rung's mean ± std over seeds, its gain over the rung above (or over the row its
  "baseline" names; "vs" says what that row is, for tables and plots), and that gain's
  verdict by the project's rule (dl101_jax.verdict): a paired interval over the seeds where
  both rows name the same "seeds" (every rung's seed s sees the same batches; TTA's row is
  the same run as the one above), Welch's otherwise, with Holm over the ladder's gains. A
  rung without accuracies (diverged) is skipped in the comparison."""
  previous, seen, tests = None, {}, []
  for r in rows:
    accs = r["val_accuracy_per_seed"]
    keyed = dict(zip(r.get("seeds") or [("row", r["rung"], i) for i in range(len(accs))],
                     accs))
    r["val_accuracy"] = float(np.mean(accs)) if accs else None
    r["val_accuracy_std"] = float(np.std(accs)) if accs else None
    r["gain"] = r["gain_ci95"] = r["verdict"] = r["test"] = r["p_holm"] = None
    if r.get("baseline"):
      previous = seen.get(r["baseline"])
    seen[r["rung"]] = keyed
    if previous and accs:
      test, low, high, p = verdict.compare(keyed, previous)
      r["gain"] = r["val_accuracy"] - float(np.mean(list(previous.values())))
      r["gain_ci95"] = [None if math.isnan(x) else x for x in (low, high)]
      r["test"] = test
      tests.append((r, low, high, p))
    previous = keyed if accs else previous
  for (r, low, high, _), ph in zip(tests, verdict.holm([t[-1] for t in tests])):
    r["p_holm"] = None if math.isnan(ph) else ph
    r["verdict"] = verdict.decide(low, high, ph)
  return rows


def ladder_table(rows: list[dict]) -> str:
  out = ["| rung | val acc (mean ± std) | gain [95% CI] | test (Holm p) | verdict | training s |",
         "|---|---|---|---|---|---|"]
  for r in rows:
    ci = r["gain_ci95"] or [None, None]
    bounds = ", ".join("–" if x is None else f"{x:+.4f}" for x in ci)
    gain = "" if r["gain"] is None else f"{r['gain']:+.4f} [{bounds}]"
    cost = "(same run)" if r["rung"] == "+ tta" else f"{r['seconds']:.0f}"
    name = r["rung"] + (f" ({r['epochs']} epochs)" if r.get("epochs") else "") + \
        (f" vs {r['vs']}" if r.get("vs") else "")
    acc = ("diverged" if r["val_accuracy"] is None
           else f"{r['val_accuracy']:.4f} ± {r['val_accuracy_std']:.4f}")
    p = r.get("p_holm")
    test = "" if r["gain"] is None else f"{r.get('test')} ({'–' if p is None else f'{p:.2g}'})"
    out.append(f"| {name} | {acc} | {gain} | {test} | {r['verdict'] or ''} | {cost} |")
  return "\n".join(out)


def run(config: Config = CONFIG) -> Results:
  chosen = config.variant_names or tuple(VARIANTS)
  airbench = [n for n in chosen if n in CIFAR_ONLY]
  if config.dataset != "cifar10" and airbench:
    small = [n for n in LADDER if n not in CIFAR_ONLY]
    raise ConfigError("dataset", f"{' and '.join(airbench)} need CIFAR-10's 32x32 images "
                      f"(airbench's network); on {config.dataset}, choose rungs with "
                      f"--variants {','.join(small)}")
  results = run_experiment(config, VARIANTS, opt_in=OPT_IN, default=CONFIG, extra=ladder)
  if results.is_primary and results.json["ladder"]:
    text = ("\nThe ladder (validation accuracy, final epoch; training s includes each epoch's "
            "evaluation):\n\n" + ladder_table(results.json["ladder"]) + "\n")
    print(text)
    path = os.path.join(config.run_dir, "summary.md")
    with open(path) as f:
      files.write_text(path, f.read() + text)
    from dl101_jax.host import plots_search

    plots_search.ladder(results.json["ladder"], os.path.join(config.run_dir, "ladder.png"))
  return results


if __name__ == "__main__":
  cli.main(run, CONFIG)
