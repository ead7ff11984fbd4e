"""--member-loop on a 'members' mesh: each device runs the one-device program on its own
rows, and nothing else. Hand-written because jit on a mesh compiles one partitioned
program, and XLA's partitioner rewrites it enough to move a member's last bits
(docs/results/member_loop_exact.md); a one-device program on device d computes exactly
what it computes on device 0, and the member loop makes it independent of the width. The
devices' calls are dispatched one after another; JAX's asynchronous dispatch runs them at
once. Each device compiles its own copy."""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from dl101_jax.host.parallel import Runtime


def _local(tree: Any, device: Any) -> Any:
  """`device`'s shard of every leaf (its rows of a split array, its copy of a replicated one)."""
  return jax.tree.map(lambda x: next(s.data for s in x.addressable_shards
                                     if s.device == device), tree)


def _whole(parts: list[Any], sharding: NamedSharding) -> Any:
  """The devices' outputs, leaf by leaf, as one global array split as `sharding` says."""
  axis = list(sharding.spec).index("members")

  def join(*leaves):
    shape = list(leaves[0].shape)
    shape[axis] *= int(sharding.mesh.shape["members"])
    return jax.make_array_from_single_device_arrays(tuple(shape), sharding, list(leaves))
  return jax.tree.map(join, *parts)


class PerDevice:
  """compile(args, n_epochs) -> a callable like a compiled run_epochs on the global arrays:
  (states split over 'members', keys_M split alike, epoch and data replicated)."""

  def __init__(self, run: Callable, rt: Runtime):
    self.run, self.rt = run, rt
    self.devices = [d for d in rt.mesh.devices.flat if d.process_index == jax.process_index()]

  def compile(self, args: tuple, n_epochs: int) -> Callable:
    # One after another: on 2 CPU cores, compiling 8 copies in threads was no faster. JAX's
    # persistent cache keys a CPU program on its device, a GPU's not: there copies 2..k
    # should be cache hits (not yet measured).
    progs = {d: self.run.lower(*_local(args, d), n_epochs=n_epochs).compile()
             for d in self.devices}
    rows = NamedSharding(self.rt.mesh, P("members"))
    cols = NamedSharding(self.rt.mesh, P(None, "members"))  # metrics: epochs x members

    def call(*a):
      local = [_local(a, d) for d in self.devices]  # all first: a call donates its states
      outs = [progs[d](*x) for d, x in zip(self.devices, local)]
      return _whole([o[0] for o in outs], rows), _whole([o[1] for o in outs], cols)
    return call
