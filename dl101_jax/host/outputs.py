"""What a finished experiment writes: results.json, summary.md, its pictures and
TensorBoard's pages, then the summary on the console; and `Results`, what run(config)
returns.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

from dl101_jax.config import Config
from dl101_jax.host import console as console_lib
from dl101_jax.host import data as data_lib
from dl101_jax.host import evaluation, files, report, results_json, seeds_auto, tb_pages
from dl101_jax.host.group import GroupResult


@dataclasses.dataclass
class Results:
  """What run(config) returns: the results.json content and the trained groups."""

  json: dict
  groups: list[GroupResult]
  dataset: data_lib.Dataset
  is_primary: bool = True  # this process writes the outputs
  data: Any = None  # the train.DeviceData the groups trained on (normalization included)

  def test_accuracy(self, variant: str) -> list[float]:
    """The test split's accuracy for each surviving seed of `variant`, in one jitted pass.

    For runs that validate on a held-out split (--val-size): select there, then
    score the chosen variant here, once.
    """
    for g in self.groups:
      acc = evaluation.evaluate_members(g, self.data, variant=variant,
                                        split=self.dataset.test_split)
      if len(acc["accuracy"]):
        return [float(a) for a in acc["accuracy"]]
    return []


def write_outputs(results: Results, config: Config, console: console_lib.Console, *,
                  plot: bool = True, draw: Callable[[Results], list[str]] | None = None) -> None:
  """results.json, summary.md, the pictures (`draw`: an experiment's own, too) and
  TensorBoard's pages; then the summary on the console and where everything went."""
  wd = config.run_dir
  files.write_json(os.path.join(wd, "results.json"), results.json)
  header, table = _summary(results, config)
  files.write_text(os.path.join(wd, "summary.md"), header + table + "\n")
  drawn = _pictures(results, wd) if plot else []
  if draw:
    drawn += draw(results)
  # TensorBoard: the pictures, the summary and the config; a mean run per variant.
  pictures = {name.removesuffix(".png"): os.path.join(wd, name) for name in drawn}
  sample = tb_pages.augmented_samples(results.dataset.x_train, config)
  if sample is not None:
    pictures["augmented"] = sample
  tb_pages.write_pages(wd, {"summary": header + table, "config": "```\n" + json.dumps(
      config.to_dict(), indent=1) + "\n```"}, pictures)
  tb_pages.write_mean_runs(wd, results.json["variants"])
  console.say("\n" + table)
  kept = ["TensorBoard runs"] + (["checkpoints"] if os.path.isdir(os.path.join(wd, "checkpoints"))
                                 else [])  # only what is there
  console.say(f"\n{config.name}: outputs in {wd}/ ("
              + ", ".join(["results.json", "summary.md", *drawn, *kept]) + ")")


def _summary(results: Results, config: Config) -> tuple[str, str]:
  """summary.md's header (data, epochs, seeds, devices) and its tables: variants, per-class
  accuracy, the experiment's claims judged, and how --seeds auto stopped."""
  table = report.summary_table(results.json)
  d = results.json["dataset"]
  auto = results.json.get("seeds_auto")
  n = auto["seeds_used"] if auto else config.seeds
  seeds = f"{n} seed{'s' if n != 1 else ''}" + (f" (--seeds auto: {auto['stopped']})"
                                                 if auto else "")
  what = "images" if results.dataset.is_image else "examples"  # OR's four rows are not images
  header = (f"# {config.name}\n\n{d['name']}: {d['train_size']} train / {d['test_size']} test "
            f"{what}, {config.epochs} epochs, {seeds}, "
            f"{results.json['devices']} {results.json['platform']} device(s)\n\n")
  errors = results.json.get("errors")
  if errors:
    per_class = evaluation.per_class_table(results.json["variants"], errors["classes"])
    table += ("\n\nPer-class validation accuracy (final model of each seed"
              f"{', mean ± std' if n > 1 else ''}):\n\n{per_class}")
  claims = results.json.get("claims")  # an experiment's own claims, judged (experiments/)
  if claims:
    table += "\n\n" + claims["table"]
  if auto:
    table += "\n\n" + seeds_auto.summary(auto)
  return header, table


def _pictures(results: Results, wd: str) -> list[str]:
  """comparison.png, and with per-example errors confusion.png and predictions.png."""
  from dl101_jax.host import plots

  plots.comparison(results.json, os.path.join(wd, "comparison.png"))
  errors = results.json.get("errors")
  if not errors:
    return ["comparison.png"]
  plots.confusion(errors, os.path.join(wd, "confusion.png"))
  ds = results.dataset
  plots.predictions(ds.x_val[:results_json.PICTURED], ds.y_val[:results_json.PICTURED],
                    errors["predictions_first_seed"], errors["classes"],
                    f"{errors['best_variant']}, first seed", os.path.join(wd, "predictions.png"))
  return ["comparison.png", "confusion.png", "predictions.png"]
