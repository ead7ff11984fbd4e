"""A population of 16 on 8 devices: members on 'members', on 'data', or a mix, side by side.

    python -m benchmarks.mesh [--devices 8] [--members 16] [--epochs 3] [--out F.json]
    python -m benchmarks.mesh --platform gpu --devices 0     # every GPU there is (gpu_check.sh)

Runs experiments.dropout on digits (`--seeds members/2`: its two variants make one
program of `--members` models) once per mesh and once more all on members with
--member-loop, each in a fresh process that sees `--devices` devices (on a CPU, XLA's
--xla_force_host_platform_device_count), and reports training images per second (every
member's images; compiling excluded: the program's wall seconds in results.json), the
ratio to the data-parallel row, and the most
memory of states one device held between chunks (results.json's state_bytes_per_device). On a
machine with that many accelerators (a TPU v2-8, 8 GPUs), pass --platform to use them.
About 3 minutes on 2 CPU cores. Results: benchmarks/results/mesh_*.json. With fewer than 2
devices there is no mesh to compare: it says so, writes {"skipped": why} to --out if given,
and exits 0, so the GPU check's row on a one-chip machine says why it has no numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile


def meshes(devices: int) -> list[str]:
  """members on every device, data on every device, and the splits between."""
  out = [f"members={devices},data=1"]
  m = devices // 2
  while m > 1:
    if devices % m == 0:
      out.append(f"members={m},data={devices // m}")
    m //= 2
  return out + [f"members=1,data={devices}"]


def once(mesh: str, args: argparse.Namespace, workdir: str, loop: bool = False) -> dict:
  env = dict(os.environ)
  if args.platform == "cpu":
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={args.devices}").strip()
  cmd = [sys.executable, "-m", "experiments.dropout", "--dataset", "digits", "--epochs",
         str(args.epochs), "--seeds", str(args.members // 2), "--batch-size", "96",
         "--mesh", mesh, "--platform", args.platform, "--checkpoint-every", "0",
         "--workdir", workdir] + (["--member-loop"] if loop else [])
  subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=1800)
  with open(os.path.join(workdir, "results.json")) as f:
    res = json.load(f)
  (group,) = res["groups"]
  images = res["dataset"]["train_size"] * args.epochs * group["members"]
  m, d = res["mesh"]["members"], res["mesh"]["data"]
  return {"mesh": res["mesh"], "label": f"{m}x{d}" + (" loop" if loop else ""),
          "member_loop": loop, "members": group["members"],
          "training_seconds": group["wall_seconds"], "compile_seconds": group["compile_seconds"],
          "images_per_s": round(images / group["wall_seconds"], 1),
          "state_mib_per_device": round(group["state_bytes_per_device"] / 2**20, 2)}


def _count(platform: str) -> int:
  import jax

  try:
    return len(jax.devices(platform))
  except RuntimeError as e:  # no such backend here
    raise SystemExit(f"error: --platform {platform}: {str(e).splitlines()[0]}") from None


def table(rows: list[dict]) -> str:
  base = next(r for r in rows if r["mesh"]["members"] == 1)["images_per_s"]
  label = lambda r: (f"{r['mesh']['members']} x {r['mesh']['data']}"  # noqa: E731
                     + (", --member-loop" if r.get("member_loop") else ""))
  out = ["| mesh (members x data) | images/s | vs data only | training s | compile s "
         "| states MiB a device |", "|---|---|---|---|---|---|"]
  for r in rows:
    out.append(f"| {label(r)} | {r['images_per_s']:.0f} | "
               f"{r['images_per_s'] / base:.2f} | {r['training_seconds']:.1f} | "
               f"{r['compile_seconds']:.1f} | {r.get('state_mib_per_device', 'n/a')} |")
  return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--devices", type=int, default=8,
                  help="devices to compare meshes on; 0: every device of --platform (a CPU: 1)")
  ap.add_argument("--members", type=int, default=16)
  ap.add_argument("--epochs", type=int, default=3)
  ap.add_argument("--platform", default="cpu", choices=("cpu", "gpu", "tpu"))
  ap.add_argument("--out", default="")
  ap.add_argument("--note", default="", help="what else ran on the machine meanwhile")
  args = ap.parse_args(argv)
  if args.members % 2 or args.devices < 0:
    ap.error("--members: an even number (two variants), --devices: 0 (all) or more")
  if args.devices == 0:  # on a CPU only XLA's flag makes more than one (what --devices N sets)
    args.devices = 1 if args.platform == "cpu" else _count(args.platform)
  out = args.out or os.path.join("benchmarks", "results",
                                 f"mesh_{args.platform}{args.devices}_{datetime.date.today()}.json")
  if args.devices < 2:
    why = f"skipped: {args.devices} {args.platform} device(s); the mesh rows need 2 or more"
    print(why)
    if args.out:  # the GPU check's record; no results file of nothing otherwise
      with open(args.out, "w") as f:
        json.dump({"benchmark": "mesh", "skipped": why}, f)
    return 0
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for i, mesh in enumerate(meshes(args.devices)):
      rows.append(once(mesh, args, os.path.join(tmp, str(i))))
      print(f"{mesh}: {rows[-1]['images_per_s']} images/s", flush=True)
    # All on members again, each device running its rows alone (--member-loop): the price of
    # training every member bit for bit as one device does.
    rows.append(once(meshes(args.devices)[0], args, os.path.join(tmp, "loop"), loop=True))
    print(f"{rows[-1]['label']}: {rows[-1]['images_per_s']} images/s", flush=True)
  report = {"benchmark": "mesh", "date": datetime.date.today().isoformat(),
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "platform": args.platform,
                        "devices": args.devices},
            "population": args.members, "epochs": args.epochs, "dataset": "digits",
            "note": args.note, "rows": rows, "table": table(rows)}
  print(report["table"])
  with open(out, "w") as f:
    json.dump(report, f, indent=1)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
