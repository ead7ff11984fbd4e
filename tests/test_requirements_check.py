"""The notebook's install step: only what is missing; Colab's TF and jax stay."""

from importlib import metadata

import pytest

from dl101_jax.host import requirements_check as rc


@pytest.fixture()
def installed(monkeypatch):
  have = {}

  def version(name):
    if name in have:
      return have[name]
    raise metadata.PackageNotFoundError(name)

  monkeypatch.setattr(rc.metadata, "version", version)
  return have


def test_only_missing_or_too_old_are_installed(installed):
  installed.update({"optax": "0.2.5", "flax": "0.10.0"})
  install, problems = rc.plan(["optax>=0.2.4,<1", "flax>=0.10.6,<1", "tyro>=0.9.1,<2",
                               "# a comment", "", "-r other.txt"])
  assert install == ["flax<1,>=0.10.6", "tyro<2,>=0.9.1"] and not problems


def test_colab_tensorflow_stands_in_for_tensorflow_cpu(installed):
  installed["tensorflow"] = "2.19.0"
  install, _ = rc.plan(['tensorflow-cpu>=2.21,<3; sys_platform != "darwin"'])
  assert install == []  # never a second TF build next to Colab's


def test_old_preinstalled_jax_is_one_line_not_an_install(installed):
  installed["jax"] = "0.4.30"
  install, problems = rc.plan(["jax>=0.6.0,<1"])
  assert install == [] and len(problems) == 1
  assert problems[0].startswith("jax 0.4.30 is installed, and this project needs jax")


def test_the_real_requirements_file_parses():
  install, problems = rc.plan_file()
  assert isinstance(install, list) and isinstance(problems, list)
