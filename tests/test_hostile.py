"""The tools under hostile input: export, predict, resume and the console (docs/reliability.md).

One short digits run (2 epochs, a checkpoint each) is exported, damaged, piped and fed
odd images; each case ends in the right behaviour, or in one line and exit status 2.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, env, run_module

TRAIN = ["--dataset", "digits", "--epochs", "2", "--train-size", "300", "--test-size", "100"]


def one_line(r, needle):
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  wd = tmp_path_factory.mktemp("hostile") / "run"
  r = run_module("experiments.dropout", *TRAIN, "--variants", "dropout", "--workdir", str(wd))
  assert r.returncode == 0, r.stderr
  r = run_module("dl101_jax.export", "--workdir", str(wd), "--variant", "dropout")
  assert r.returncode == 0, r.stderr
  return wd, wd / "export" / "dropout-seed0"


def _predict(model, *args):
  r = run_module("dl101_jax.predict", str(model), *args, "--json")
  return r, (json.loads(r.stdout) if r.returncode == 0 else None)


# --- Images as users have them.

def _digit(tmp_path):
  """A test image of the digits set (8 x 8 gray, 0..255) and its file."""
  from sklearn.datasets import load_digits

  img = (load_digits().images[5] * 255 / 16).round().astype(np.uint8)
  path = tmp_path / "digit.png"
  Image.fromarray(img).save(path)
  return img, str(path)


def test_image_variants_give_the_8_bit_images_answer_and_say_what_was_converted(run, tmp_path):
  _, model = run
  img, plain = _digit(tmp_path)
  variants = {}
  Image.fromarray(img.astype(np.uint16) * 257).save(tmp_path / "16bit.png")  # same values
  rgba = np.dstack([img] * 3 + [np.full_like(img, 255)])
  Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque_rgba.png")
  Image.fromarray(img).convert("P").save(tmp_path / "palette.png")
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 CW to view": stored turned the other way
  Image.fromarray(np.rot90(img, 1)).save(tmp_path / "exif_rotated.png", exif=exif)
  frames = [Image.fromarray(img), Image.fromarray(255 - img)]
  frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
  Image.fromarray(img).save(tmp_path / "still.gif")
  Image.fromarray(np.kron(img, np.ones((4, 4), np.uint8))).save(tmp_path / "big.png")
  r, out = _predict(model, plain, *(str(tmp_path / f) for f in (
      "16bit.png", "opaque_rgba.png", "palette.png", "exif_rotated.png", "animated.gif",
      "still.gif")))
  assert r.returncode == 0, r.stderr
  for o in out[1:]:
    variants[os.path.basename(o["file"])] = o["top"]
  assert variants["16bit.png"] == out[0]["top"]  # scaled, not clipped to 0/255
  assert variants["opaque_rgba.png"] == out[0]["top"]
  assert variants["palette.png"] == out[0]["top"]
  assert variants["exif_rotated.png"] == out[0]["top"]  # upright again
  assert variants["animated.gif"] == variants["still.gif"]  # the first frame
  notes = r.stderr
  for said in ("16-bit images were scaled to 8 bits", "EXIF orientation was applied",
               "animated images: the first frame"):
    assert notes.count(said) == 1, notes
  assert "Traceback" not in notes


def test_float_images_are_read_as_0_to_1_or_as_0_to_255_and_other_modes_are_said(run, tmp_path):
  _, model = run
  img, plain = _digit(tmp_path)
  Image.fromarray(img.astype(np.float32) / 255, "F").save(tmp_path / "unit.tiff")
  Image.fromarray(img.astype(np.float32), "F").save(tmp_path / "bytes.tiff")  # not clipped white
  Image.fromarray(np.dstack([img, np.full_like(img, 255)]), "LA").save(tmp_path / "la.png")
  Image.fromarray(img).convert("CMYK").save(tmp_path / "cmyk.tiff")
  r, out = _predict(model, plain, *(str(tmp_path / f) for f in (
      "unit.tiff", "bytes.tiff", "la.png", "cmyk.tiff")))
  assert r.returncode == 0, r.stderr
  assert [o["top"] for o in out[1:]] == [out[0]["top"]] * 4, r.stderr
  for said in ("32-bit float images were read as 0..1", "values above 1 were read as 0..255",
               "CMYK images were converted to RGB"):
    assert r.stderr.count(said) == 1, r.stderr


def test_transparency_is_flattened_on_white_and_said(run, tmp_path):
  _, model = run
  img, _ = _digit(tmp_path)
  rgba = np.dstack([img] * 3 + [np.where(img > 128, 255, 0).astype(np.uint8)])
  Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
  on_white = np.where(img > 128, img, 255).astype(np.uint8)
  Image.fromarray(on_white).save(tmp_path / "on_white.png")
  r, out = _predict(model, str(tmp_path / "cut.png"), str(tmp_path / "on_white.png"))
  assert r.returncode == 0 and out[0]["top"] == out[1]["top"], r.stderr
  assert "transparent pixels were flattened on white" in r.stderr


def _png_claiming(path, w, h):
  """A tiny valid PNG whose header says w x h (the pixels are never there)."""
  small = path.with_suffix(".tmp.png")
  Image.new("L", (1, 1)).save(small)
  data = bytearray(small.read_bytes())
  small.unlink()
  data[16:24] = struct.pack(">II", w, h)  # IHDR's width and height, then its CRC
  data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
  path.write_bytes(bytes(data))


def test_hostile_files_and_flags_are_one_line(run, tmp_path):
  _, model = run
  _, plain = _digit(tmp_path)
  _png_claiming(tmp_path / "bomb.png", 40000, 40000)
  one_line(run_module("dl101_jax.predict", str(model), str(tmp_path / "bomb.png")),
           "at most 64,000,000 are read")
  (tmp_path / "empty").mkdir()
  one_line(run_module("dl101_jax.predict", str(model), str(tmp_path / "empty")),
           "has no image files")
  os.mkfifo(tmp_path / "pipe.png")
  one_line(run_module("dl101_jax.predict", str(model), str(tmp_path / "pipe.png"), timeout=60),
           "is not a regular file")
  for top in ("0", "-1"):
    one_line(run_module("dl101_jax.predict", str(model), plain, "--top", top),
             "--top: must be an integer >= 1")
  r, out = _predict(model, plain, "--top", "11")
  assert r.returncode == 0 and len(out[0]["top"]) == 10  # every class, once
  one_line(run_module("dl101_jax.predict", str(model), "--inputs", "nan,1"),
           "--inputs: must be finite numbers")


def test_a_fifo_in_a_folder_is_skipped_not_read(run, tmp_path):
  _, model = run
  folder = tmp_path / "mixed"
  folder.mkdir()
  _, plain = _digit(folder)
  os.mkfifo(folder / "stream.png")  # opening it would block forever
  r, out = _predict(model, str(folder))
  assert r.returncode == 0 and [o["file"] for o in out] == [plain], r.stderr


# --- Exports are verified; export recovers from damaged checkpoints.

def test_a_damaged_export_is_refused_with_what_is_wrong(run, tmp_path):
  _, model = run
  _, plain = _digit(tmp_path)
  files = json.load(open(model / "manifest.json"))["files"]
  biggest = max(files, key=lambda f: files[f]["bytes"])
  cases = {"missing": lambda d: os.remove(d / biggest),
           "truncated": lambda d: open(d / biggest, "r+b").truncate(3),
           "edited": lambda d: _flip_byte(d / biggest),
           "spec edited": lambda d: (d / "model.json").write_text(
               (d / "model.json").read_text().replace('"epoch": 2', '"epoch": 1')),
           "no manifest": lambda d: os.remove(d / "manifest.json")}
  needles = {"missing": f"{biggest} is missing", "truncated": f"{biggest} has 3 bytes",
             "edited": f"{biggest} was changed since export",
             "spec edited": "model.json was changed", "no manifest": "has no manifest.json"}
  for name, damage in cases.items():
    d = tmp_path / name.replace(" ", "_")
    shutil.copytree(model, d)
    damage(d)
    one_line(run_module("dl101_jax.predict", str(d), plain), needles[name])


def _flip_byte(path):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


def _newest_step_dir(wd):
  group = next(g for g in sorted(os.listdir(wd / "checkpoints")) if "." not in g)
  return wd / "checkpoints" / group / "2"


@pytest.mark.parametrize("damage", ["emptied state", "truncated state", "meta not json",
                                    "meta lacks keys", "truncated state, --best"])
def test_export_falls_back_to_the_newest_intact_checkpoint(run, tmp_path, damage):
  src, _ = run
  wd = tmp_path / "run"
  shutil.copytree(src, wd, ignore=shutil.ignore_patterns("export", "events.*"))
  step = _newest_step_dir(wd)
  state_files = [p for p in (step / "state").rglob("*") if p.is_file() and p.stat().st_size]
  if damage == "emptied state":
    for p in state_files:
      p.write_bytes(b"")
  elif damage.startswith("truncated state"):
    for p in state_files:
      open(p, "r+b").truncate(p.stat().st_size // 2)
  elif damage == "meta not json":
    (step / "meta" / "metadata").write_text("{not json")
  else:
    (step / "meta" / "metadata").write_text(json.dumps({"epoch": 2}))
  best = ["--best"] if damage.endswith("--best") else []
  r = run_module("dl101_jax.export", "--workdir", str(wd), "--variant", "dropout", *best)
  assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
  assert f"{step} is unreadable" in r.stderr and "trying an older checkpoint" in r.stderr
  assert json.load(open(wd / "export" / "dropout-seed0" / "model.json"))["epoch"] == 1


def test_export_refuses_in_one_line_when_nothing_is_readable_or_writable(run, tmp_path):
  src, _ = run
  wd = tmp_path / "run"
  shutil.copytree(src, wd, ignore=shutil.ignore_patterns("export", "events.*"))
  (tmp_path / "a_file").write_text("x")
  export = lambda *a: run_module("dl101_jax.export", "--workdir", str(wd), "--variant",
                                 "dropout", *a)
  one_line(export("--out", str(tmp_path / "a_file")), "--out: ")
  one_line(export("--out", str(tmp_path / "a_file" / "model")), "--out: ")
  (tmp_path / "others").mkdir()
  (tmp_path / "others" / "notes.txt").write_text("mine")
  one_line(export("--out", str(tmp_path / "others")), "holds other files")
  if os.geteuid() != 0:  # root writes through any mode bits
    os.chmod(wd, 0o555)
    one_line(export(), "cannot write to")
    os.chmod(wd, 0o755)
  for step in _newest_step_dir(wd).parent.iterdir():
    (step / "meta" / "metadata").write_text("{not json")
  one_line(export(), "no readable checkpoint")


# --- Numbers at the edges, and flags that would be ignored.

@pytest.mark.parametrize("args, needle", [
    (["--seed", "3000000000"], "--seed: must be an integer in [0, 2147483647]"),
    (["--epochs", "1000000000", "--schedule", "warmup_linear"], "--epochs: must be an integer"),
    (["--epochs", str(10**20)], "--epochs: must be an integer in [1, 1000000]"),
    (["--data-dir", "/tmp"], "--data-dir: must be unset for --dataset digits"),
])
def test_numbers_at_the_edges_are_one_line(args, needle, tmp_path):
  one_line(run_module("experiments.dropout", "--dataset", "digits", *args,
                      "--workdir", str(tmp_path / "w")), needle)
  assert not (tmp_path / "w").exists()


def test_resuming_on_other_data_is_refused(run, tmp_path):
  src, _ = run
  wd = tmp_path / "run"
  shutil.copytree(src, wd, ignore=shutil.ignore_patterns("export", "events.*"))
  meta = next(_newest_step_dir(wd).parent.glob("*/meta/metadata"))
  m = json.loads(meta.read_text())
  m["data"]["fingerprint"] = "0" * 16  # as if trained on other images
  for p in _newest_step_dir(wd).parent.glob("*/meta/metadata"):
    p.write_text(json.dumps(m))
  r = run_module("experiments.dropout", *TRAIN[:2], "--epochs", "3", *TRAIN[4:],
                 "--variants", "dropout", "--workdir", str(wd))
  assert r.returncode == 2 and "was trained on other data" in r.stderr, r.stderr


# --- The console is not the run.

def test_a_closed_stdout_stops_printing_never_training(tmp_path):
  wd = tmp_path / "piped"
  cmd = [sys.executable, "-m", "experiments.dropout", *TRAIN, "--variants", "dropout",
         "--workdir", str(wd)]
  p = subprocess.run(["bash", "-c", " ".join(map(str, cmd)) + " | head -1; "
                      "echo \"status ${PIPESTATUS[0]}\" >&2"],
                     cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240)
  assert len(p.stdout.splitlines()) == 1 and "status 141" in p.stderr, p.stderr
  assert "Traceback" not in p.stderr and "stdout was closed" in p.stderr
  res = json.load(open(wd / "results.json"))  # finished, with its outputs
  assert res["variants"][0]["per_seed"][0]["epoch"] == [1, 2]
  assert (wd / "summary.md").exists()


def test_a_second_ctrl_c_mid_save_leaves_one_line_and_no_thread_traceback(capfd):
  """A KeyboardInterrupt out of a save (the second Ctrl-C) sends fd 2 to /dev/null, where
  orbax's threads print their tracebacks as the process ends, and the CLI's one line goes to
  the real stderr."""
  from dl101_jax.host import checkpoint, cli

  try:
    with pytest.raises(KeyboardInterrupt):
      with checkpoint._stderr_held():
        raise KeyboardInterrupt
    os.write(2, b"Traceback (most recent call last): ... in an orbax thread\n")
    cli.say_error("Interrupted before a checkpoint. To resume from the last one: ...")
  finally:
    if checkpoint._real_stderr:
      os.dup2(checkpoint._real_stderr.pop(), 2)
  assert capfd.readouterr().err == ("Interrupted before a checkpoint. To resume from the last "
                                    "one: ...\n")


def test_a_class_without_test_images_has_no_accuracy_not_zero(tmp_path):
  r = run_module("experiments.dropout", "--dataset", "digits", "--epochs", "1", "--train-size",
                 "300", "--test-size", "5", "--variants", "dropout", "--checkpoint-every", "0",
                 "--workdir", str(tmp_path))
  assert r.returncode == 0, r.stderr
  res = json.load(open(tmp_path / "results.json"))
  acc = res["variants"][0]["per_class_accuracy"]
  assert sum(v is None for v in acc.values()) >= 5  # 5 test images cover at most 5 classes
  assert all(v is None or 0 <= v <= 1 for v in acc.values())
  rows = [ln for ln in (tmp_path / "summary.md").read_text().splitlines() if ln.startswith("| ")]
  assert sum(ln.endswith("| n/a |") for ln in rows) == sum(v is None for v in acc.values())
