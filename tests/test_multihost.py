"""Many processes: 2 processes x 2 devices against 1 process x 4 devices (jax.distributed), on
a (members, data) = (2, 2) mesh: the two members live on different processes, and each
member's batch is split over its process's two devices; the checkpoint they write together
exports from one process."""

import json
import os
import socket

from helpers import popen_module, run_module


def _final(path):
  r = json.load(open(path))
  return r, {v["name"]: v["final"]["val_loss"] for v in r["variants"]}


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
  args = ["--dataset", "digits", "--epochs", "1", "--train-size", "720",
          "--mesh", "members=2,data=2"]
  coord = f"127.0.0.1:{_free_port()}"
  wd = str(tmp_path / "mp")
  procs = [popen_module("experiments.dropout", *args, "--workdir", wd, "--coordinator", coord,
                        "--num-processes", "2", "--process-id", str(i),
                        XLA_FLAGS="--xla_force_host_platform_device_count=2") for i in range(2)]
  outs = [p.communicate(timeout=240) for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  one = run_module("experiments.dropout", *args, "--workdir", str(tmp_path / "sp"),
                   XLA_FLAGS="--xla_force_host_platform_device_count=4")
  assert one.returncode == 0, one.stderr
  rm, vm = _final(os.path.join(wd, "results.json"))
  rs, vs = _final(tmp_path / "sp" / "results.json")
  assert (rm["devices"], rm["processes"]) == (4, 2)
  assert (rs["devices"], rs["processes"]) == (4, 1)
  assert rm["mesh"] == rs["mesh"] == {"members": 2, "data": 2}
  for name in ("dropout", "no_dropout"):
    assert abs(vm[name] - vs[name]) < 1e-3, (name, vm, vs)
  assert "| Adam:no_dropout |" in outs[0][0] and "| Adam" not in outs[1][0]  # process 0 reports
  # Each process wrote its own member's part of the checkpoint; one process reads both back.
  for name in ("dropout", "no_dropout"):
    e = run_module("dl101_jax.export", "--workdir", wd, "--variant", name,
                   "--out", str(tmp_path / "x" / name))
    assert e.returncode == 0, e.stderr
    spec = json.load(open(tmp_path / "x" / name / "model.json"))
    assert (spec["epoch"], spec["parameters"]) == (1, rm["variants"][0]["parameters"])
