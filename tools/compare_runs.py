"""How far apart two workdirs of the same experiments ended: per seed, per metric, per epoch.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python -m experiments --dataset digits --epochs 3 --seeds 3 --mesh members=8,data=1 \
      --workdir /tmp/eight
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python -m experiments --dataset digits --epochs 3 --seeds 3 --devices 1 --workdir /tmp/one
    python tools/compare_runs.py /tmp/eight /tmp/one --out docs/results/mesh_protocol_digits

Both workdirs hold one results.json per experiment (WORKDIR/NAME/results.json, or one at the
top). Every seed of every variant is matched by (experiment, variant, seed index); the
largest absolute difference of each metric is reported for epoch 1 and for the last epoch,
with the mesh each run used, and how many of all the values of results.json differ (times
and placement aside: `numbers`; 0 for --member-loop runs in one process on any mesh, as
docs/results/member_loop_exact.md measured). Writes
OUT.json and OUT.md; exits 1 if a seed is missing on
one side or a history differs in length (those runs did not train the same models).

--common-seeds compares only the seeds both ran: a noise floor without a second mesh, e.g.
`--seeds 3` against `--seeds 4` on one device, where the same seeds train in programs of
different widths (9 members vmapped against 12), so XLA tiles and rounds them differently:

    python -m experiments.learning_rate --dataset digits --epochs 3 --seeds 3 --workdir /tmp/s3
    python -m experiments.learning_rate --dataset digits --epochs 3 --seeds 4 --workdir /tmp/s4
    python tools/compare_runs.py /tmp/s3 /tmp/s4 --common-seeds
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
# What says when and where a run trained, not what it computed: left out of `numbers`.
PLACE_AND_TIME = {"seconds", "wall_seconds", "compile_seconds", "process_seconds", "mesh",
                  "devices", "processes", "state_bytes_per_device", "software", "config"}


def numbers(tree, path: str = "") -> dict:
  """Every value of a results.json by its path (e.g. /variants[0]/per_seed[1]/val_loss[2]),
  but for the times and the placement: two runs that computed alike have equal numbers."""
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() if key not in PLACE_AND_TIME
            for k, v in numbers(sub, f"{path}/{key}").items()}
  if isinstance(tree, list):
    return {k: v for i, sub in enumerate(tree) for k, v in numbers(sub, f"{path}[{i}]").items()}
  return {path: tree}


def _results(workdir: str) -> dict[str, dict]:
  paths = sorted(glob.glob(os.path.join(workdir, "*", "results.json")))
  paths = paths or [os.path.join(workdir, "results.json")]
  return {json.load(open(p))["experiment"]: json.load(open(p)) for p in paths if os.path.exists(p)}


def _seeds(res: dict) -> dict[tuple[str, int], dict]:
  return {(v["name"], i): h for v in res["variants"] for i, h in enumerate(v["per_seed"])}


def compare(a_dir: str, b_dir: str, common_seeds: bool = False) -> dict:
  a, b = _results(a_dir), _results(b_dir)
  out = {"a": a_dir, "b": b_dir, "experiments": {}, "problems": []}
  for name in sorted(set(a) | set(b)):
    if name not in a or name not in b:
      out["problems"].append(f"{name}: only in {'b' if name in b else 'a'}")
      continue
    sa, sb = _seeds(a[name]), _seeds(b[name])
    if common_seeds:
      sa, sb = ({k: s[k] for k in s if k in sa and k in sb} for s in (sa, sb))
    if sa.keys() != sb.keys() or not sa:
      out["problems"].append(f"{name}: different seeds")
      continue
    na, nb = numbers(a[name]), numbers(b[name])
    differ = sorted(k for k in na.keys() | nb.keys() if na.get(k) != nb.get(k))
    row = {"mesh": [a[name].get("mesh"), b[name].get("mesh")], "seeds": len(sa),
           "numbers": len(na), "numbers_differing": len(differ), "first_differing": differ[:5]}
    for m in METRICS:
      first = last = 0.0
      for k in sa:
        ha, hb = sa[k].get(m, []), sb[k].get(m, [])
        if len(ha) != len(hb):
          out["problems"].append(f"{name} {k}: {m} has {len(ha)} vs {len(hb)} epochs")
          continue
        if ha:
          first, last = max(first, abs(ha[0] - hb[0])), max(last, abs(ha[-1] - hb[-1]))
      row[m] = {"epoch_1": first, "last_epoch": last}
    out["experiments"][name] = row
  return out


def markdown(c: dict) -> str:
  lines = [f"# {c['a']} against {c['b']}", "",
           "Largest absolute difference over every seed of every variant, at epoch 1 and at "
           "the last epoch.", "",
           "| experiment | models | mesh | " + " | ".join(METRICS) + " | numbers differing |",
           "|---|---|---|" + "---|" * (len(METRICS) + 1)]
  for name, r in c["experiments"].items():
    mesh = " vs ".join(f"{m['members']}×{m['data']}" if m else "?" for m in r["mesh"])
    cells = [f"{r[m]['epoch_1']:.1e} / {r[m]['last_epoch']:.1e}" for m in METRICS]
    lines.append(f"| {name} | {r['seeds']} | {mesh} | " + " | ".join(cells)
                 + f" | {r['numbers_differing']} of {r['numbers']} |")
  lines += ["", "Cells: epoch 1 / last epoch. Numbers: every value of results.json but its "
            "times and placement (mesh, devices, processes, config, software)."]
  if c["problems"]:
    lines += ["", "Problems:", *[f"- {p}" for p in c["problems"]]]
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("a")
  p.add_argument("b")
  p.add_argument("--out", help="write OUT.json and OUT.md (default: print the table)")
  p.add_argument("--common-seeds", action="store_true",
                 help="compare only the seeds both ran (runs with different --seeds)")
  args = p.parse_args(argv)
  for d in (args.a, args.b):
    if not _results(d):
      p.error(f"{d}: no results.json in it or in its subfolders")
  c = compare(args.a, args.b, args.common_seeds)
  if args.out:
    with open(args.out + ".json", "w") as f:
      json.dump(c, f, indent=1)
    with open(args.out + ".md", "w") as f:
      f.write(markdown(c))
  print(markdown(c), end="")
  return 1 if c["problems"] else 0


if __name__ == "__main__":
  sys.exit(main())
