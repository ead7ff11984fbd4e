"""Devices, meshes and hosts: one code path for 1 device, N devices or N processes.

A 2-D mesh (members, data). The stacked members of a group's program (states, keys,
hyperparameters) are sharded on 'members': each device trains its own members and nothing
crosses between them until the chunk's metrics. Each batch is sharded on 'data', so XLA's
partitioner all-reduces a member's gradients across those devices (one big model). The
dataset (small) is replicated. By default every device goes to 'members' when a program
trains at least as many members as there are devices, else to 'data'; --mesh sets it.
Under jax.distributed every process runs the same program on the global mesh; each
device gathers its own shard of every global batch from its replica of the data.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dl101_jax.host import files
from dl101_jax.config import Config, ConfigError


class OutOfMemory(RuntimeError):
  """A program did not fit in host or device memory; the message says what to lower."""


def is_out_of_memory(e: BaseException) -> bool:
  """XLA's RESOURCE_EXHAUSTED / out-of-memory errors, and Python's MemoryError."""
  if isinstance(e, MemoryError):
    return True
  text = str(e)
  return ("RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()) and (
      "No space left" not in text)


def out_of_memory(e: BaseException, *, what: str, batch_size: int, members: int,
                  rt: "Runtime") -> OutOfMemory:
  first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
  return OutOfMemory(
      f"out of memory while {what} ({first}): batch {batch_size}, {members} model(s) in one "
      f"program (variants x seeds), {rt.num_devices} {rt.platform} device(s). Lower "
      f"--batch-size, --seeds or --variants, or add --devices; the checkpoints so far are intact")


def cache_dir() -> str:
  return os.path.join(files.cache_root(), "jax")


def configure_jax(config: Config) -> None:
  """Process-wide JAX settings a config asks for; call before any computation."""
  if config.debug_nans:
    jax.config.update("jax_debug_nans", True)
  if config.compilation_cache:
    jax.config.update("jax_compilation_cache_dir", cache_dir())
    # Every program, however small (0 s): a warm digits run then starts 0.8 s sooner
    # (5.6 -> 4.8 s measured) than with 0.2 s, which left the small jits to recompile.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  if config.coordinator or config.num_processes > 1:
    _init_distributed(config)


_distributed = False


def _init_distributed(config: Config) -> None:
  global _distributed
  if _distributed:
    return
  if config.platform in ("cpu", "auto"):
    try:  # cross-process collectives on CPU need gloo
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception:
      pass
  if config.coordinator == "auto":
    jax.distributed.initialize()  # Cloud TPU, Slurm, Kubernetes, ...
  else:
    if not config.coordinator:
      raise ConfigError("coordinator", "must be HOST:PORT (or 'auto') when --num-processes > 1")
    jax.distributed.initialize(coordinator_address=config.coordinator,
                               num_processes=config.num_processes, process_id=config.process_id)
  _distributed = True


@dataclasses.dataclass(frozen=True)
class Runtime:
  """Where a run computes: the (members, data) mesh and the shardings it uses."""

  mesh: Mesh

  @property
  def num_devices(self) -> int:
    return self.mesh.devices.size

  @property
  def axes(self) -> dict[str, int]:
    """{'members': M, 'data': D}, as results.json records the mesh."""
    return {name: int(size) for name, size in self.mesh.shape.items()}

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def batch_sharding(self) -> NamedSharding | None:
    # With one device on 'data' there is nothing to partition; skip the constraint.
    return NamedSharding(self.mesh, P("data")) if self.axes["data"] > 1 else None

  @property
  def member_sharding(self) -> NamedSharding | None:
    """The stacked member axis split over 'members' (None: every device holds every member)."""
    return NamedSharding(self.mesh, P("members")) if self.axes["members"] > 1 else None

  @property
  def platform(self) -> str:
    return self.mesh.devices.flat[0].platform

  @property
  def processes(self) -> int:
    return jax.process_count()

  @property
  def is_primary(self) -> bool:
    return jax.process_index() == 0


def mesh_shape(config: Config, n_devices: int, members: int = 0) -> tuple[int, int]:
  """(members, data) devices: --mesh, checked against the devices; else all on 'members'
  when a program trains at least `members` >= n_devices members (or with --member-loop,
  which trains each device's rows alone), all on 'data' otherwise."""
  if config.mesh:
    m, d = config.mesh_axes
    if m * d != n_devices:
      raise ConfigError("mesh", f"{config.mesh} uses {m * d} devices, but {n_devices} are "
                        f"used (--devices, or all); the two axes must multiply to {n_devices}")
    return m, d
  on_members = n_devices > 1 and (members >= n_devices or config.member_loop)
  return (n_devices, 1) if on_members else (1, n_devices)


def runtime(config: Config, members: int = 0) -> Runtime:
  """The mesh a config asks for (`members`: the most a program of the run trains, for the
  default split); fails loudly if the platform is missing."""
  if config.platform != "auto":
    try:
      devices = jax.devices(config.platform)
    except RuntimeError:
      devices = []
    if not devices:
      have = jax.devices()[0].platform
      raise ConfigError("platform", f"no {config.platform} device found (JAX sees {have}); "
                        f"on Colab, check the runtime type and that no other kernel holds it")
  else:
    devices = jax.devices()
  if config.devices:
    if jax.process_count() > 1:
      raise ConfigError("devices", "must be 0 (all) in a multi-process run")
    if config.devices > len(devices):
      raise ConfigError("devices", f"must be at most {len(devices)} (devices present), "
                        f"got {config.devices}")
    devices = devices[: config.devices]
  m, n = mesh_shape(config, len(devices), members)
  if config.batch_size % n:
    lo, hi = config.batch_size // n * n, (config.batch_size // n + 1) * n
    valid = f"{lo} or {hi}" if lo else f"{hi}"
    raise ConfigError("batch_size", f"{config.batch_size} is not divisible by the {n} devices "
                      f"of the mesh's data axis; use a multiple of {n} such as {valid}, fewer "
                      f"--devices, or --mesh members=...")
  return Runtime(Mesh(np.array(devices).reshape(m, n), ("members", "data")))


def to_device(tree: Any, sharding: NamedSharding) -> Any:
  """Host arrays -> global arrays with `sharding` (each process passes the same data)."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x)),
      tree)


def to_host(tree: Any) -> Any:
  """Global arrays -> numpy, whole, on every process. An array split over processes (the
  members' states) is gathered, a collective: every process must call this together."""
  from jax.experimental import multihost_utils

  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        return np.asarray(jax.device_get(x.addressable_data(0)))
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(one, tree)
