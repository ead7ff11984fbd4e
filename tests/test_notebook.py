"""notebooks/start_here.ipynb executes top to bottom (small setting, CPU)."""

import os

import nbformat
from nbclient import NotebookClient

from helpers import ROOT


def test_notebook_runs(tmp_path, monkeypatch):
  monkeypatch.setenv("DL101_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("DL101_OFFLINE", "1")
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "start_here.ipynb"), as_version=4)
  # A scratch working dir that looks like the repository root, so runs/ lands in tmp.
  monkeypatch.chdir(tmp_path)
  os.symlink(os.path.join(ROOT, "dl101_jax"), tmp_path / "dl101_jax")
  os.symlink(os.path.join(ROOT, "experiments"), tmp_path / "experiments")
  os.symlink(os.path.join(ROOT, "requirements.txt"), tmp_path / "requirements.txt")
  NotebookClient(nb, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
  assert "backend: CPU" in text
  assert "Testing OR operator" in text and "no_dropout: val acc" in text
  images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  assert images, "the comparison picture was not shown"
  assert (tmp_path / "runs" / "dropout" / "results.json").exists()
  assert len(images) >= 3, "comparison, confusion and predictions pictures"
  assert "true class:" in text and "| predicted: [[" in text
  assert (tmp_path / "runs" / "dropout" / "export" / "dropout-seed0" / "model.json").exists()
