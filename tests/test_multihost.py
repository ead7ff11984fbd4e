"""Many processes: 2 processes x 2 devices against 1 process x 4 devices (jax.distributed), on
a (members, data) = (2, 2) mesh: 3 members padded to 4, two a process, each member's batch
split over its process's two devices; the checkpoint they write together (3 members: on every
device, as an uneven count is under several processes) exports from one process."""

import json
import os
import socket

from helpers import popen_module, run_module


def _final(path):
  r = json.load(open(path))
  (v,) = r["variants"]
  return r, [h["val_loss"][-1] for h in v["per_seed"]]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
  args = ["--dataset", "digits", "--epochs", "1", "--train-size", "720", "--variants", "dropout",
          "--seeds", "3", "--mesh", "members=2,data=2"]
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
  assert "compiling 3 model(s) into one program (4 over 2 devices)" in outs[0][0]
  assert len(vm) == len(vs) == 3
  for seed, (a, b) in enumerate(zip(vm, vs)):
    assert abs(a - b) < 1e-3, (seed, vm, vs)
  assert "| Adam |" in outs[0][0] and "| Adam" not in outs[1][0]  # process 0 reports
  # Each process wrote its part of the checkpoint; one process reads every member back.
  for seed in range(3):
    e = run_module("dl101_jax.export", "--workdir", wd, "--variant", "dropout", "--seed",
                   str(seed), "--out", str(tmp_path / "x" / str(seed)))
    assert e.returncode == 0, e.stderr
    spec = json.load(open(tmp_path / "x" / str(seed) / "model.json"))
    assert (spec["epoch"], spec["parameters"]) == (1, rm["variants"][0]["parameters"])
