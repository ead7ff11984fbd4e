"""In-epoch progress: ticks from inside the scanned epoch, once per tick for the whole group."""

import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax.core import member_state, train
from dl101_jax.core.optim import make_optimizer
from dl101_jax.host.console import Console, EpochTicker
from helpers import small_group_data

DATA, MODEL = small_group_data()


def _states(m):
  hp = {"seed": jnp.arange(m, dtype=jnp.int32),
        **{k: jnp.full((m,), v, jnp.float32) for k, v in
           dict(learning_rate=1e-2, weight_decay=0.0, dropout=0.5, l2=0.0, l1=0.0).items()}}
  return member_state.init_states(MODEL, make_optimizer("adam"), jnp.zeros((1, 6, 6, 1)), hp)


def test_ticks_come_once_per_tick_for_the_whole_group_and_change_nothing():
  ticks = []
  base = train.Program("xent", 4, 12, flip=True, rotate=25.0)  # 10 steps per epoch
  ticking = dataclasses.replace(base, progress_every=3,
                                on_progress=lambda e, s: ticks.append((int(e), int(s))))
  keys = member_state.member_keys([0, 1, 2])
  outs = []
  for prog in (base, ticking):
    run = train.compile_run_epochs(prog)
    states, mets = run(_states(3), keys, jnp.int32(0), DATA, n_epochs=2)
    jax.block_until_ready(mets)
    outs.append((states, mets))
  jax.effects_barrier()
  # Three members under vmap, yet one tick per 3 steps: steps 3, 6, 9 of epochs 0 and 1.
  assert sorted(ticks) == [(e, s) for e in (0, 1) for s in (3, 6, 9)]
  for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # progress costs no change


def test_progress_line_on_a_terminal_is_cleared_by_the_epoch_block():
  out = io.StringIO()
  console = Console(epochs=5, every=1, stream=out, tty=True)
  ticker = EpochTicker(console, steps_per_epoch=100, epochs=5)
  ticker.start(2)
  ticker.tick(2, 40)
  assert out.getvalue().startswith("\r\x1b[Kepoch 3/5: step 40/100 (40%)")
  assert "epoch ETA" in out.getvalue()
  console.show(3, ["Training Step: 300", "| Adam | epoch: 003"])
  assert out.getvalue().endswith("\r\x1b[KTraining Step: 300\n| Adam | epoch: 003\n")


def test_no_progress_line_off_a_terminal():
  out = io.StringIO()
  console = Console(epochs=5, every=1, stream=out, tty=False)
  EpochTicker(console, 100, 5).tick(0, 50)
  assert out.getvalue() == ""
