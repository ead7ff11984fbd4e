"""What TensorBoard shows of a workdir beyond each run's per-epoch scalars: the pictures
(Images), the summary and the config (Text), and one mean run per variant with several seeds.

Each is written when the outputs are, into event files replaced whole (report._replace_events),
so writing the outputs again replaces them instead of piling up."""

from __future__ import annotations

import os

import numpy as np

from dl101_jax.host.report import OVERLAY, TAGS, _replace_events, import_tensorboardx

PAGES_EVENTS = "events.out.tfevents.1.pages"
MEAN_EVENTS = "events.out.tfevents.0.mean"


def write_pages(logdir: str, texts: dict[str, str], pictures: dict[str, str]) -> None:
  """The Images and Text pages: each PNG in `pictures` (tag -> path) and each markdown text
  (tag -> text)."""
  import_tensorboardx()
  from PIL import Image
  from tensorboardX.summary import image, text

  summaries = [text(tag, body) for tag, body in texts.items()]
  for tag, png in pictures.items():
    with Image.open(png) as im:
      summaries.append(image(tag, np.asarray(im.convert("RGB")), dataformats="HWC"))
  _replace_events(os.path.join(logdir, PAGES_EVENTS), summaries)


def write_mean_runs(logdir: str, variants: list[dict]) -> list[str]:
  """<logdir>/<variant>-mean for each variant with several seeds: the mean over its seeds,
  epoch by epoch, under the same tags and train/validation overlay as each seed's run.
  Returns the runs written."""
  import_tensorboardx()
  from tensorboardX.summary import scalar

  written = []
  for v in variants:
    h = v["history"]
    if v["seeds"] < 2 or not h["epoch"]:
      continue
    run = os.path.join(logdir, f"{v['name']}-mean")
    by_folder: dict[str, list] = {"": [], "train": [], "validation": []}
    for k, tag in TAGS.items():
      for epoch, x in zip(h["epoch"], h.get(k) or []):
        if x is not None and np.isfinite(x):
          by_folder[""].append((epoch, scalar(tag, x)))
          sub, overlay = OVERLAY[k]
          by_folder[sub].append((epoch, scalar(overlay, x)))
    for sub, points in by_folder.items():
      os.makedirs(os.path.join(run, sub), exist_ok=True)
      _replace_events(os.path.join(run, sub, MEAN_EVENTS), [s for _, s in sorted(
          points, key=lambda p: p[0])], steps=[e for e, _ in sorted(points, key=lambda p: p[0])])
    written.append(run)
  return written
