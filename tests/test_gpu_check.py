"""benchmarks/gpu_check.sh, the first check on a lent accelerator, run at toy sizes on the
CPU (GPU_CHECK_TINY=1) so that it still works when a GPU finally comes."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu_report
from helpers import ROOT, env

SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")


def _check(*args, tmp=None, **extra):
  # TMPDIR: the script's work dir (the runs' own outputs) lands in the test's tmp_path.
  return subprocess.run(["bash", SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=400, env=env(PYTHON=sys.executable, TMPDIR=str(tmp), **extra)
                        if tmp else env(PYTHON=sys.executable, **extra))


def test_tiny_check_runs_every_step_and_writes_the_json_and_the_table(tmp_path):
  # The script's own test step runs here on one quick file of pure config checks: the
  # suite runs the script's default selection anyway.
  r = _check("unused", str(tmp_path), tmp=tmp_path, GPU_CHECK_TINY="1",
             GPU_CHECK_TESTS="tests/test_config_bounds.py -k seeds")
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
  (js,) = tmp_path.glob("gpu_check_cpu_*.json")
  report = json.loads(js.read_text())
  assert [s["name"] for s in report["steps"]] == [
      "tests", "start_here", "dropout", "modern", "train_step_bf16", "mesh"]
  assert all(s["rc"] == 0 for s in report["steps"])
  assert report["tests"]["passed"] > 0 and report["tests"]["failed"] == 0
  assert set(report["dropout"]["val_accuracy"]) == {"dropout", "no_dropout"}
  assert report["dropout"]["dataset"]["name"] == "digits"
  bench = report["train_step_bf16"]
  assert bench["images_per_s"]["32"] > 0 and 0 < bench["mfu"] < 1
  assert bench["chip_peak_tflops"] is None  # a CPU has no published peak in the table
  assert bench["compile_cache"] is True  # the tiny check loads its programs; the real one compiles
  md = js.with_suffix(".md").read_text()
  # One CPU device: no mesh to compare, and the row says why rather than staying empty.
  assert report["mesh"] == "skipped: 1 cpu device(s); the mesh rows need 2 or more"
  assert "| mesh | 0 |" in md and report["mesh"] in md
  assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + 6  # header, 6 steps
  assert "| dropout | 0 |" in md and "val acc dropout" in md


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
  r = _check()
  assert r.returncode == 2 and r.stderr.strip().startswith("usage:")
  r = _check(str(tmp_path / "missing"), str(tmp_path))
  assert r.returncode == 2
  assert r.stderr.strip().splitlines() == [
      f"error: DATA_DIR: {tmp_path / 'missing'} is not a directory (a prepared TFDS dir with "
      "CIFAR-10)"]


def _one_step(tmp_path, name, rc, seconds, log):
  """A gpu_check work dir holding one recorded step and its log; (work, out) dirs."""
  work, out = tmp_path / "work", tmp_path / "out"
  work.mkdir()
  out.mkdir()
  (work / "steps.jsonl").write_text(
      json.dumps({"name": name, "rc": rc, "seconds": seconds, "command": ["python"]}) + "\n")
  (work / f"{name}.log").write_text(log)
  return work, out


def test_a_failed_step_is_a_row_with_its_exit_status_and_log(tmp_path, capsys):
  work, out = _one_step(tmp_path, "modern", 124, 120, "epoch 3/10\nkilled by timeout\n")
  assert gpu_report.main([str(work), str(out)]) == 1
  (md,) = out.glob("gpu_check_unknown_*.md")
  assert "| modern | 124 | 120 | epoch 3/10 / killed by timeout |" in md.read_text()


def test_the_chip_table_matches_jax_device_kinds():
  from benchmarks.train_step import chip_peak_tflops

  assert chip_peak_tflops("NVIDIA H100 PCIe") == 756.0
  assert chip_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
  assert chip_peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
  assert chip_peak_tflops("Tesla T4") == 65.0
  assert chip_peak_tflops("TPU v5 lite") == 197.0
  assert chip_peak_tflops("cpu") is None


def test_mesh_rows_on_several_devices_are_one_row_of_images_per_second(tmp_path):
  work, out = _one_step(tmp_path, "mesh", 0, 60, "done\n")
  rows = [{"mesh": {"members": m, "data": d}, "images_per_s": ips, "state_mib_per_device": mib}
          for m, d, ips, mib in ((2, 1, 900.4, 1.5), (1, 2, 600.0, 3.0), (2, 1, 800.0, 1.5))]
  rows[-1]["label"] = "2x1 loop"  # --member-loop's row: the same mesh, labelled apart
  (work / "mesh.json").write_text(json.dumps({"benchmark": "mesh", "rows": rows}))
  assert gpu_report.main([str(work), str(out)]) == 0
  (md,) = out.glob("gpu_check_unknown_*.md")
  assert ("| mesh | 0 | 60 | images/s 2x1: 900, 1x2: 600, 2x1 loop: 800 (members x data); "
          "states MiB a chip 2x1: 1.5, 1x2: 3.0, 2x1 loop: 1.5 |") in md.read_text()


def test_the_mesh_benchmark_on_one_device_says_it_is_skipped(tmp_path, capsys):
  from benchmarks import mesh

  path = tmp_path / "mesh.json"
  assert mesh.main(["--devices", "0", "--out", str(path)]) == 0  # a CPU: one device
  assert json.loads(path.read_text())["skipped"] == capsys.readouterr().out.strip()
  with pytest.raises(SystemExit):  # an odd population cannot be split into two variants
    mesh.main(["--members", "3", "--out", str(path)])
