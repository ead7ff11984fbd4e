"""One workdir, one run: a second process on a live run's workdir is refused in one line;
a lock left by a killed run is taken over."""

import os
import signal
import subprocess
import sys

HOLD = ("import sys, time; from dl101_jax.host import files\n"
        "with files.hold_workdir(sys.argv[1]):\n"
        "  print('held', flush=True); time.sleep(120)\n")


def _start_here(workdir, *extra):
  return subprocess.run([sys.executable, "-m", "experiments.start_here", "--workdir", str(workdir),
                         "--epochs", "3", *extra], capture_output=True, text=True, timeout=120)


def test_a_second_run_on_a_held_workdir_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    # The same config and a different one: both refused, nothing written.
    for extra in ((), ("--learning-rate", "1.0")):
      out = _start_here(tmp_path, *extra)
      assert out.returncode == 2, out.stderr
      err = out.stderr.strip()
      assert len(err.splitlines()) == 1 and err.startswith("error: --workdir:")
      assert f"pid {holder.pid}" in err
    assert not (tmp_path / "results.json").exists()
  finally:
    holder.send_signal(signal.SIGKILL)  # dies holding the lock: its file stays behind
    holder.wait()
  assert (tmp_path / ".lock").exists()
  out = _start_here(tmp_path)
  assert out.returncode == 0, out.stderr
  assert (tmp_path / "results.json").exists()
  assert (tmp_path / ".lock").read_text().strip() != str(holder.pid)  # the new run's pid


def test_runs_one_after_another_in_one_process_share_a_workdir(tmp_path):
  from dl101_jax.host import files

  for _ in range(2):  # released at the end of each
    with files.hold_workdir(str(tmp_path)):
      assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
  with files.hold_workdir(str(tmp_path)):
    try:
      with files.hold_workdir(str(tmp_path)):
        raise AssertionError("a second hold of a held workdir must be refused")
    except files.WorkdirBusy as e:
      assert e.pid == str(os.getpid())
