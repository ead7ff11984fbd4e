"""The package's layers, as docs/code.md draws them: imports only run downward.

config.py imports only config_checks.py and net_spec.py (config_checks.py only net_spec.py,
which imports nothing of the project); core/ (compiled, pure) imports only those and core;
host/ never imports the tools on top (export, predict, tuning, verdict)."""

import ast
import os

import pytest

from helpers import ROOT

PKG = os.path.join(ROOT, "dl101_jax")
TOOLS = {"dl101_jax.export", "dl101_jax.predict", "dl101_jax.tuning", "dl101_jax.verdict"}


def _modules():
  for folder, _, names in os.walk(PKG):
    for n in names:
      if n.endswith(".py"):
        path = os.path.join(folder, n)
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        yield rel.removesuffix(".__init__"), path


def _imports(path: str) -> set[str]:
  """Every dl101_jax module a file imports, at the top or inside a function."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith("dl101_jax")}
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dl101_jax"):
      out |= {f"{node.module}.{a.name}" for a in node.names}  # a module or a name in one
  return out


MODULES = dict(_modules())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_downward(name):
  imported = _imports(MODULES[name])
  if name == "dl101_jax.net_spec":
    assert imported == set()
  elif name == "dl101_jax.config":
    assert {i for i in imported if not i.startswith(
        ("dl101_jax.net_spec", "dl101_jax.config_checks"))} == set()
  elif name == "dl101_jax.config_checks":  # knows no Config: config imports it, not back
    assert {i for i in imported if not i.startswith("dl101_jax.net_spec")} == set()
  elif name.startswith("dl101_jax.core"):
    assert {i for i in imported if not i.startswith(
        ("dl101_jax.core", "dl101_jax.config", "dl101_jax.net_spec"))} == set()
  elif name.startswith("dl101_jax.host"):
    assert {i for i in imported if i.startswith(tuple(TOOLS))} == set()


def test_the_check_sees_a_violation(tmp_path):
  bad = tmp_path / "m.py"
  bad.write_text("def f():\n  from dl101_jax.host import files\n  import dl101_jax.export\n")
  assert _imports(str(bad)) == {"dl101_jax.host.files", "dl101_jax.export"}
