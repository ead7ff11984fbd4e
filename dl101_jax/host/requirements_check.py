"""What a preinstalled environment (Colab) lacks from requirements.txt, without replacing what it has.

`pip install -r requirements.txt` on Colab would put tensorflow-cpu next to
Colab's own tensorflow (two TF builds in one environment fail to load) and could
move Colab's jax away from its libtpu. So the notebook installs only what is
missing, treats an installed `tensorflow` as satisfying `tensorflow-cpu`, and
says in one line when the preinstalled jax is older than the project's lower
bound. Standard library and `packaging` only: it runs before anything is installed.
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement

# A requirement that another installed distribution already covers.
EQUIVALENT = {"tensorflow-cpu": "tensorflow"}
# Preinstalled builds that must not be replaced; too old is reported, not fixed.
KEEP = ("jax", "jaxlib")


def _installed(name: str) -> str | None:
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


def plan(lines: list[str]) -> tuple[list[str], list[str]]:
  """(requirements to install, one-line problems) for requirements.txt lines."""
  install, problems = [], []
  for raw in lines:
    line = raw.split("#")[0].strip()
    if not line or line.startswith("-"):
      continue
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
      continue
    have = _installed(req.name)
    if have is None and req.name in EQUIVALENT:
      have = _installed(EQUIVALENT[req.name])
      if have is not None:
        continue  # e.g. Colab's tensorflow stands in for tensorflow-cpu
    if have is not None and req.specifier.contains(have, prereleases=True):
      continue
    if have is not None and req.name in KEEP:
      problems.append(f"{req.name} {have} is installed, and this project needs {req.name}"
                      f"{req.specifier}; kept as is (Colab pins it to its accelerator). "
                      f"Use a runtime with a newer {req.name}.")
      continue
    install.append(str(req))
  return install, problems


def plan_file(path: str = "requirements.txt") -> tuple[list[str], list[str]]:
  with open(path) as f:
    return plan(f.read().splitlines())
