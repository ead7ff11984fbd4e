"""What TensorBoard shows of a workdir beyond each run's per-epoch scalars: the pictures
(Images), the summary and the config (Text), one mean run per variant with several seeds, and
which config fields a session records and the HParams dashboard compares.

Each is written when the outputs are, into event files replaced whole (report.replace_events),
so writing the outputs again replaces them instead of piling up."""

from __future__ import annotations

import functools
import os

import numpy as np

from dl101_jax.config import RUN, Config, fields_with_role
from dl101_jax.host import files
from dl101_jax.host.report import OVERLAY, TAGS, import_tensorboardx, replace_events

PAGES_EVENTS = "events.out.tfevents.1.pages"
MEAN_EVENTS = "events.out.tfevents.0.mean"


def write_pages(logdir: str, texts: dict[str, str], pictures: dict) -> None:
  """The Images and Text pages: each picture in `pictures` (tag -> a PNG's path, or an
  HxWx3 uint8 array) and each markdown text (tag -> text)."""
  import_tensorboardx()
  from PIL import Image
  from tensorboardX.summary import image, text

  summaries = [_scalar_text(text(tag, body)) for tag, body in texts.items()]
  for tag, picture in pictures.items():
    if isinstance(picture, str):
      with Image.open(picture) as im:
        picture = np.asarray(im.convert("RGB"))
    summaries.append(image(tag, picture, dataformats="HWC"))
  replace_events(os.path.join(logdir, PAGES_EVENTS), summaries)


def _scalar_text(summary):
  """tensorboardX writes a text as a 1-element vector, which TensorBoard draws as a table
  of one cell; as a scalar string it renders as the markdown page it is."""
  summary.value[0].tensor.tensor_shape.ClearField("dim")
  return summary


def augmented_samples(x_NxHxWxC: np.ndarray, config, n: int = 8) -> np.ndarray | None:
  """n training images (top row) above one draw of the run's augmentation of them (flip,
  rotation, translation, on raw pixels as TFLearn orders it), as one HxWx3 uint8 picture
  scaled to at least 64 px per image; None when the run does not augment."""
  if x_NxHxWxC.ndim != 4 or not (config.flip or config.rotate > 0 or config.translate > 0):
    return None
  import jax

  from dl101_jax.core.augment import augment

  x = np.asarray(x_NxHxWxC[:n], np.float32)
  # Jitted: one program, not a compile for each of the dozen eager ops inside.
  draw = jax.jit(functools.partial(augment, flip=config.flip, max_degrees=config.rotate,
                                   max_shift=config.translate))
  aug = np.asarray(draw(jax.random.PRNGKey(config.seed), x))
  lo, hi = float(x.min()), float(x.max())
  framed = lambda im: np.pad(im, ((1, 1), (1, 1), (0, 0)), constant_values=(lo + hi) / 2)  # noqa: E731
  grid = np.concatenate([np.concatenate([framed(im) for im in row], axis=1)
                         for row in (x, aug)], axis=0)
  grid = np.clip((grid - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
  if grid.shape[-1] == 1:
    grid = np.repeat(grid, 3, axis=-1)
  k = max(1, -(-64 // x.shape[1]))  # nearest-neighbour upscaling: 8x8 digits stay visible
  return np.kron(grid, np.ones((k, k, 1), np.uint8))


def write_mean_runs(logdir: str, variants: list[dict]) -> list[str]:
  """<logdir>/<variant>-mean for each variant with several seeds: the mean over its seeds,
  epoch by epoch, under the same tags and train/validation overlay as each seed's run.
  Returns the runs written."""
  import_tensorboardx()
  from tensorboardX.summary import scalar

  written = []
  for v in variants:
    h, run = v["history"], os.path.join(logdir, f"{v['name']}-mean")
    if v["seeds"] < 2 or not h["epoch"]:
      files.remove_tree(run)  # an earlier run's mean, with more seeds than this one has
      continue
    by_folder: dict[str, list] = {"": [], "train": [], "validation": []}
    for k, tag in TAGS.items():
      for epoch, x in zip(h["epoch"], h.get(k) or []):
        if x is not None and np.isfinite(x):
          by_folder[""].append((epoch, scalar(tag, x)))
          sub, overlay = OVERLAY[k]
          by_folder[sub].append((epoch, scalar(overlay, x)))
    for sub, points in by_folder.items():
      os.makedirs(os.path.join(run, sub), exist_ok=True)
      points.sort(key=lambda p: p[0])  # by epoch, as each seed's run logs them
      replace_events(os.path.join(run, sub, MEAN_EVENTS), [s for _, s in points],
                     steps=[e for e, _ in points])
    written.append(run)
  return written


def logged_fields(c0: Config) -> list[str]:
  """The config fields a TensorBoard session records: all but the run options."""
  return [k for k in c0.to_dict() if k not in fields_with_role(RUN)]


def hparams_columns(members: list) -> dict[str, list]:
  """The HParams dashboard's columns for an experiment: the variant, then each recorded
  field whose value differs between its runs (constant ones are in results.json)."""
  columns = {"variant": list(dict.fromkeys(m.variant for m in members))}
  for k in logged_fields(members[0].config):
    values = list(dict.fromkeys(getattr(m.config, k) for m in members))
    if len(values) > 1:
      columns[k] = values
  return columns
