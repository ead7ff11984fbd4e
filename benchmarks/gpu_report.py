"""gpu_check.sh's last step: one JSON and one markdown table from the check's work dir.

    python -m benchmarks.gpu_report WORK_DIR OUT_DIR

Reads WORK_DIR/steps.jsonl (one line per step: name, rc, seconds, command), the runs'
results.json and the train-step benchmark's JSON, and writes
OUT_DIR/gpu_check_<device kind>_<date>.{json,md}. A failed step is a row with its exit
status and the last lines of its log, never a missing row.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys


def _load(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _tail(path: str, n: int = 3) -> list[str]:
  try:
    with open(path, errors="replace") as f:
      return [line.rstrip() for line in f.readlines()[-n:]]
  except OSError:
    return []


def _run_summary(results: dict | None) -> dict | None:
  """What a run says about itself: accuracy per variant, compile and training seconds."""
  if not results:
    return None
  variants = results["variants"]
  return {"devices": results["devices"], "platform": results["platform"],
          "dataset": results["dataset"],
          "process_seconds": results.get("process_seconds"),
          "compile_seconds": round(sum({v["name"]: v.get("compile_seconds", 0.0)
                                        for v in variants}.values()), 2),
          "val_accuracy": {v["name"]: v["final"]["val_accuracy"] for v in variants},
          "val_accuracy_std": {v["name"]: v["final_std"]["val_accuracy"] for v in variants},
          "train_seconds": {v["name"]: v["wall_seconds"] for v in variants}}


def report(work: str) -> dict:
  steps = []
  with open(os.path.join(work, "steps.jsonl")) as f:
    for line in f:
      s = json.loads(line)
      s["log_tail"] = _tail(os.path.join(work, s["name"] + ".log"))
      steps.append(s)
  by = {s["name"]: s for s in steps}
  out = {"date": datetime.date.today().isoformat(), "steps": steps}
  if "tests" in by:
    m = re.search(r"(\d+) passed", " ".join(by["tests"]["log_tail"]))
    f = re.search(r"(\d+) failed", " ".join(by["tests"]["log_tail"]))
    out["tests"] = {"passed": int(m.group(1)) if m else 0, "failed": int(f.group(1)) if f else 0}
  for name in ("dropout", "modern", "start_here"):
    out[name] = _run_summary(_load(os.path.join(work, name, "results.json")))
  mesh = _load(os.path.join(work, "mesh.json"))
  if mesh:
    key = lambda r: r.get("label") or f"{r['mesh']['members']}x{r['mesh']['data']}"  # noqa: E731
    out["mesh"] = mesh.get("skipped") or {key(r): r["images_per_s"] for r in mesh["rows"]}
    if not mesh.get("skipped"):  # the most training-state memory one chip held, per mesh
      out["mesh_state_mib"] = {key(r): r.get("state_mib_per_device") for r in mesh["rows"]}
  for precision in ("f32", "bf16"):
    bench = _load(os.path.join(work, f"train_step_{precision}.json"))
    if bench:
      out["machine"] = bench["machine"]
      out[f"train_step_{precision}"] = {k: bench[k] for k in (
          "reference_batch", "flops_per_image", "mfu", "matmul_peak_gflops", "chip_peak_tflops",
          "mfu_chip_peak", "vmap", "overhead_fraction", "compile_cache")} | {
          "images_per_s": {str(r["batch_size"]): r["images_per_s"] for r in bench["rows"]},
          "compile_s": {str(r["batch_size"]): r["compile_s"] for r in bench["rows"]}}
  return out


def _mesh_cell(r: dict) -> str:
  """The mesh step's result: images/s per (members x data) mesh, then the training states'
  MiB one chip held (benchmark files before 2026-12-06 lack them)."""
  cell = "images/s " + ", ".join(f"{k}: {v:.0f}" for k, v in r["mesh"].items())
  cell += " (members x data)"
  mib = r.get("mesh_state_mib") or {}
  if mib and None not in mib.values():
    cell += "; states MiB a chip " + ", ".join(f"{k}: {v}" for k, v in mib.items())
  return cell


def markdown(r: dict) -> str:
  m = r.get("machine", {})
  lines = [f"# GPU check, {r['date']}", "",
           f"Device: {m.get('device_kind', 'unknown')} ({m.get('platform', '?')}), jax "
           f"{m.get('jax', '?')}, Python {m.get('python', '?')}.", "",
           "| step | exit | seconds | result |", "|---|---|---|---|"]
  for s in r["steps"]:
    result = ""
    if s["name"] == "tests" and "tests" in r:
      result = f"{r['tests']['passed']} passed, {r['tests']['failed']} failed"
    elif s["name"] in ("dropout", "modern", "start_here") and r.get(s["name"]):
      run = r[s["name"]]
      accs = ", ".join(f"{k} {v:.4f}" for k, v in run["val_accuracy"].items() if v is not None)
      result = ((f"val acc {accs}; " if accs else "") + f"compile {run['compile_seconds']:.1f} s, "
                f"training {max(run['train_seconds'].values()):.1f} s")
    elif s["name"].startswith("train_step_") and r.get(s["name"]):
      b = r[s["name"]]
      ips = ", ".join(f"batch {k}: {v:.0f}" for k, v in b["images_per_s"].items())
      chip = ("" if b["mfu_chip_peak"] is None else
              f", MFU {b['mfu_chip_peak']:.3f} of the chip's {b['chip_peak_tflops']:.0f} TFLOP/s")
      result = (f"images/s {ips}; {b['mfu']:.2f} of the measured matmul peak "
                f"({b['matmul_peak_gflops']:.0f} GFLOP/s){chip}")
    elif s["name"] == "mesh" and r.get("mesh"):
      result = r["mesh"] if isinstance(r["mesh"], str) else _mesh_cell(r)
    elif s["rc"] != 0:
      result = " / ".join(s["log_tail"])[-200:].replace("|", "\\|")
    lines.append(f"| {s['name']} | {s['rc']} | {s['seconds']} | {result} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 2:
    print("usage: python -m benchmarks.gpu_report WORK_DIR OUT_DIR", file=sys.stderr)
    return 2
  work, out_dir = argv
  r = report(work)
  kind = re.sub(r"[^A-Za-z0-9]+", "_", r.get("machine", {}).get("device_kind", "unknown"))
  stem = os.path.join(out_dir, f"gpu_check_{kind.strip('_').lower()}_{r['date']}")
  with open(stem + ".json", "w") as f:
    json.dump(r, f, indent=1)
  with open(stem + ".md", "w") as f:
    f.write(markdown(r))
  print(markdown(r))
  print(f"wrote {stem}.json and {stem}.md")
  return 0 if all(s["rc"] == 0 for s in r["steps"]) else 1


if __name__ == "__main__":
  sys.exit(main())
