"""Where a group's stacked members live: on a mesh with a 'members' axis of k devices,
split over it, k-th by k-th, from the first chunk to the last.

Between chunks the states stay where the chunk left them, so each device holds only its own
members (a population of 36 on 8 chips keeps 5 a chip, not 36). The axis needs a multiple of
k: a group of M members is padded to W = ⌈M/k⌉·k with copies of its last member, which train
exactly as it does and whose results are never read. The host knows M (`Progress.alive`);
the states' leading axis is W. Everything that picks members (pruning the diverged,
halving's rungs, PBT's exploit) picks among the first M and pads again, in one program that
moves only what changes hands. A checkpoint and a finished group hold exactly the M members,
split as far as M allows (`exact`): over all k devices when M fills them evenly, else over
gcd(M, k) groups of them.
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dl101_jax.host.parallel import Runtime


def members_axis(tree: Any) -> tuple[NamedSharding | None, int]:
  """(the 'members' placement of a stacked pytree, the devices on that axis); (None, 1)
  when every device holds every member (one device, or a mesh that splits only batches)."""
  s = getattr(jax.tree.leaves(tree)[0], "sharding", None)
  spec = getattr(s, "spec", None)
  if isinstance(s, NamedSharding) and spec and spec[0] == "members":
    return s, int(s.mesh.shape["members"])
  return None, 1


def width(tree: Any) -> int:
  """W: the members a stacked pytree holds, padding included."""
  return int(jax.tree.leaves(tree)[0].shape[0])


def padded(idx: Sequence[int], k: int) -> np.ndarray:
  """`idx` filled up to a multiple of k with its last entry: the padding copies the last."""
  idx = list(idx)
  return np.asarray(idx + idx[-1:] * (-len(idx) % k), np.int32)


@jax.jit
def _take(tree: Any, ix_M: jax.Array) -> Any:  # one program, not an eager gather per leaf
  return jax.tree.map(lambda a: a[ix_M], tree)


@functools.lru_cache(maxsize=None)
def _take_to(sharding: NamedSharding):  # one jit per placement (shardings are hashable)
  return jax.jit(lambda tree, ix_M: jax.tree.map(lambda a: a[ix_M], tree),
                 out_shardings=sharding)


def spread(tree: Any, idx: Sequence[int], sharding: NamedSharding | None) -> Any:
  """The members `idx` of a stacked pytree, in that order, padded and split over `sharding`'s
  'members' axis; with None, exactly `idx`, where the tree lives. Jitted, so that every
  process of a multi-host run moves its part; the index is uncommitted (global arrays too)."""
  if sharding is None:
    return _take(tree, np.asarray(list(idx), np.int32))
  return _take_to(sharding)(tree, padded(idx, int(sharding.mesh.shape["members"])))


def select(tree: Any, idx: Sequence[int]) -> Any:
  """The members `idx` (positions among the first M) of a stacked pytree, in that order,
  placed as the tree is: split over 'members' and padded again, or where it was."""
  return spread(tree, idx, members_axis(tree)[0])


def stay(tree: Any, split: NamedSharding | None) -> Any:
  """Inside a jitted step that rewrites stacked states: them on `split`, the 'members'
  placement the next chunk's program was compiled for (None: where XLA puts them)."""
  return tree if split is None else jax.lax.with_sharding_constraint(tree, split)


def exact(rt: Runtime, m: int) -> NamedSharding:
  """Where exactly m members can live, no padding: JAX holds no uneven split, so over
  g = gcd(m, k) groups of the k 'members' devices, each group holding m/g of them (copied
  over its devices). m filling the axis is g = k, the chunks' own split; g = 1 is every
  device. 12 members on 8 devices: 4 groups of 2 devices, 3 members a device, not 12.
  Several processes: all k or every device."""
  k = rt.axes["members"]
  g = math.gcd(m, k)
  if g == k:
    return rt.member_sharding or rt.replicated
  # Under several processes, moving arrays between two meshes (jax.device_put's reshard)
  # hung in a gloo collective here (2 processes x 2 CPU devices, 6 members over 4), so
  # there the members go to every device.
  if g == 1 or rt.processes > 1:
    return rt.replicated
  # Contiguous groups of the mesh's devices, in its order (each with its 'data' devices).
  return NamedSharding(Mesh(rt.mesh.devices.reshape(g, -1), ("members", "copies")),
                       P("members"))


def trim(tree: Any, m: int, rt: Runtime) -> Any:
  """The first m members of a stacked pytree and no padding: what a checkpoint and a
  finished group hold. A no-op where there is no padding to drop, or no member (None)."""
  if tree is None or members_axis(tree)[0] is None and width(tree) == m:
    return tree
  to = exact(rt, m)
  if to.mesh is not rt.mesh:  # first onto the groups' mesh (W rows divide over g groups):
    tree = jax.device_put(tree, to)  # a jit can't take one mesh's arrays to another's
  return _take_to(to)(tree, np.arange(m, dtype=np.int32))


def placed(tree: Any, m: int, rt: Runtime) -> Any:
  """A stacked pytree of exactly m members (restored, or made on every device) where the
  chunks want it: padded and split over 'members' on such a mesh, else as it is."""
  if rt.member_sharding is None:
    return tree
  return spread(tree, range(m), rt.member_sharding)


def bytes_per_device(tree: Any) -> int:
  """The most bytes of a pytree's arrays that any one of this process's devices holds (the
  shards' sizes: metadata, nothing is read)."""
  held: collections.Counter = collections.Counter()
  for leaf in jax.tree.leaves(tree):
    for shard in getattr(leaf, "addressable_shards", ()):
      held[shard.device] += shard.data.nbytes
  return max(held.values(), default=0)
