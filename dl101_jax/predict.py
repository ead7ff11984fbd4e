"""Classify new images (or OR inputs) with an exported model.

    python -m dl101_jax.predict runs/dropout/export/dropout-seed0 cat.jpg more_photos/
    python -m dl101_jax.predict runs/dropout/export/dropout-seed0 cat.jpg --json
    python -m dl101_jax.predict runs_or/export/or-seed0 --inputs 0,1

PNG, JPEG, BMP, GIF or WebP files, and folders of them (regular files only), up to
64 megapixels: 8 or 16 bits, gray, palette or colour, transparency flattened on white,
EXIF orientation applied, an animation's first frame (dl101_jax/host/images.py). Each is
converted to the model's channels, resized to its input size and normalized as in
training; what was converted is said once per kind on stderr. The export is checked
against its manifest (sizes and sha256) before use. Prints the top-3 classes with probabilities per image, or with
--json one list [{"file": ..., "top": [[class_name, probability], ...]}, ...].
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np
import tyro

from dl101_jax.config import Config, ConfigError
from dl101_jax.host import files, images
from dl101_jax.host.files import EXPORT_FORMAT as FORMAT, OLD_EXPORT_FORMATS as OLD_FORMATS

@dataclasses.dataclass(frozen=True)
class PredictConfig:
  """An exported model and what to classify."""

  model_dir: tyro.conf.Positional[str]
  """A directory written by python -m dl101_jax.export."""
  images: tyro.conf.Positional[tuple[str, ...]] = ()
  """Image files or folders of them."""
  json: bool = False
  """Print one JSON list instead of text."""
  inputs: str = ""
  """For the OR neuron: the two inputs, e.g. 0,1."""
  top: int = 3
  """How many classes to list per image (>= 1; all of them when it exceeds their number)."""


@dataclasses.dataclass(frozen=True)
class Model:
  """An exported member: its network, variables (params, BatchNorm statistics) and how
  training saw its inputs."""

  spec: dict
  module: Any
  variables: dict

  @property
  def class_names(self) -> list[str]:
    return class_names(self.spec)

  def probabilities(self, x_NxF: np.ndarray) -> np.ndarray:
    """N x K class probabilities for raw inputs (uint8 images, or OR features)."""
    import jax
    import jax.numpy as jnp

    d = self.spec["data"]
    mean = np.asarray(d["mean"], np.float32)
    std = np.asarray(d["std"], np.float32)
    x = (np.asarray(x_NxF, np.float32) - mean) / std
    from dl101_jax.core.augment import tta_logits

    tta = self.spec["config"].get("tta", 0)  # as the run evaluated it
    out = np.asarray(jax.jit(lambda v, x: tta_logits(
        lambda xb: self.module.apply(v, xb, train=False), x, tta))(self.variables, jnp.asarray(x)))
    if out.shape[-1] == 1:  # one sigmoid: P(1), P(0)
      return np.concatenate([out, 1 - out], axis=-1)
    return np.asarray(jax.nn.softmax(out, axis=-1))


def class_names(spec: dict) -> list[str]:
  d = spec["data"]
  return d["class_names"] or [str(k) for k in range(d["num_classes"])]


def read_spec(model_dir: str) -> dict:
  """The export's model.json, checked against its manifest, or ConfigError naming what is
  wrong. No JAX yet: a damaged or mistyped export is refused at once."""
  path = os.path.join(model_dir, "model.json")
  try:
    spec = json.load(open(path))
  except (OSError, ValueError):
    spec = None
  if not isinstance(spec, dict) or spec.get("format") not in (FORMAT, *OLD_FORMATS):
    raise ConfigError("model_dir", f"{model_dir} is not an exported model (no valid model.json); "
                      f"make one with python -m dl101_jax.export")
  if spec["format"] == FORMAT:
    problem = files.check_manifest(model_dir)
    if problem:
      raise ConfigError("model_dir", f"{model_dir} is damaged: {problem}; export it again")
  else:
    print(f"note: {model_dir} was exported before manifests ({spec['format']}); its files "
          f"are not verified", file=sys.stderr)
  return spec


def load(model_dir: str, spec: dict | None = None) -> Model:
  """An exported model, checked against its manifest, or ConfigError naming what is wrong."""
  spec = read_spec(model_dir) if spec is None else spec
  import orbax.checkpoint as ocp

  from dl101_jax.core.models import make_model

  try:
    fields = {f.name for f in dataclasses.fields(Config)}
    config = Config(**{k: v for k, v in spec["config"].items() if k in fields})
    whiten = spec["data"].get("whiten")  # the airbench net's first conv, made from the data
    module = make_model(config, spec["data"]["num_classes"], dropout=False,
                        whiten=None if whiten is None else np.asarray(whiten, np.float32))
    with ocp.StandardCheckpointer() as reader:
      part = "params" if spec["format"] == OLD_FORMATS[-1] else "variables"
      variables = reader.restore(os.path.join(os.path.abspath(model_dir), part))
  except (KeyError, TypeError, ValueError, OSError) as e:
    raise ConfigError("model_dir", f"{model_dir} cannot be loaded ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:100] if str(e) else ''}); export it again") from None
  if part == "params":  # format 1 saved the params alone
    variables = {"params": variables}
  return Model(spec, module, variables)


def read_inputs(spec: dict, cfg: PredictConfig,
                notes: set[str]) -> tuple[list[str], np.ndarray, list[str]]:
  """What to classify, as the model takes it: (names of the inputs, N x ... batch, class
  names), or ConfigError. Only the spec is needed, so bad inputs are refused before the
  model is loaded."""
  names = class_names(spec)
  shape = spec["data"]["input_shape"]
  if cfg.top < 1:
    raise ConfigError("top", f"must be an integer >= 1 (more than the model's classes lists "
                      f"them all), got {cfg.top}")
  if cfg.inputs:
    try:
      x = np.asarray([[float(v) for v in cfg.inputs.split(",")]], np.float32)
    except ValueError:
      raise ConfigError("inputs", f"must be comma-separated numbers, got {cfg.inputs!r}") from None
    if not np.all(np.isfinite(x)):
      raise ConfigError("inputs", f"must be finite numbers, got {cfg.inputs!r}")
    if x.shape[1:] != tuple(shape):
      raise ConfigError("inputs", f"this model takes {shape[0]} numbers, got {x.shape[1]}")
    names = ["1", "0"] if spec["data"]["num_classes"] == 1 else names
    return [cfg.inputs], x, names
  if len(shape) != 3:
    raise ConfigError("inputs", "this model takes numbers, not images: use --inputs")
  paths = images.image_files(cfg.images)
  return paths, np.stack([images.read_image(f, shape, notes) for f in paths]), names


def top_classes(model: Model, inputs: tuple[list[str], np.ndarray, list[str]],
                top: int) -> list[dict]:
  """[{"file": ..., "top": [[class_name, probability], ...]}, ...] for read_inputs' batch."""
  paths, batch, names = inputs
  out = []
  for f, p in zip(paths, model.probabilities(batch)):
    order = np.argsort(-p)[:top]
    out.append({"file": f, "top": [[names[k], float(p[k])] for k in order]})
  return out


def classify(model: Model, cfg: PredictConfig, notes: set[str] | None = None) -> list[dict]:
  """Top classes per input; `notes` gathers what was converted (one sentence per kind)."""
  notes = set() if notes is None else notes
  return top_classes(model, read_inputs(model.spec, cfg, notes), cfg.top)


def main(args: list[str] | None = None) -> None:
  from dl101_jax.host import cli

  cfg = cli.parse(PredictConfig("."), args, prog="python -m dl101_jax.predict",
                  description=__doc__.split("\n\n")[0])
  notes: set[str] = set()
  try:
    spec = read_spec(cfg.model_dir)
    inputs = read_inputs(spec, cfg, notes)  # every refusal before JAX is imported
    results = top_classes(load(cfg.model_dir, spec), inputs, cfg.top)
  except ConfigError as e:
    cli.fail(str(e), 2)
  for n in sorted(notes):
    print(f"note: {n}", file=sys.stderr)
  if cfg.json:
    print(json.dumps(results))
    return
  for r in results:
    print(f"{r['file']}: " + ", ".join(f"{name} {p:.3f}" for name, p in r["top"]))


if __name__ == "__main__":
  main()
