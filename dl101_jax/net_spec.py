"""What a `--net` string means: conv layer sets, each closed by a pool, then fc widths."""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class NetSpec:
  """A parsed `--net` string: conv layer sets (each ends in a 2x2 pool), then fc widths.

  `pool_last` is False when the last run of convs has no pool after it, as in the
  tutorial's published 'without dropout' notebook (conv32-pool-conv64-conv64-fc512).
  """

  layer_sets: tuple[tuple[int, ...], ...]
  fc: tuple[int, ...]
  pool_last: bool = True

  @property
  def is_perceptron(self) -> bool:
    return not self.layer_sets and not self.fc


_TOKEN = re.compile(r"^(conv|fc)([1-9][0-9]*)$|^pool$")


def parse_net(net: str) -> NetSpec:
  """'conv32-pool-conv64-conv64-pool-fc512' -> NetSpec(((32,), (64, 64)), (512,)).

  'perceptron' is one Dense unit with a sigmoid. The final fc to the class
  count is implicit, and so is the dropout layer before it. Only the last run
  of convs may go without a pool ('conv32-pool-conv64-conv64-fc512').
  """
  if net == "perceptron":
    return NetSpec((), ())
  sets, convs, fc, pool_last = [], [], [], True
  for tok in net.split("-"):
    m = _TOKEN.match(tok)
    if not m:
      raise ValueError(f"unknown layer {tok!r} (allowed: convN, pool, fcN)")
    if tok == "pool":
      if not convs or fc:
        raise ValueError("'pool' must close a run of convN layers before any fcN")
      sets.append(tuple(convs))
      convs = []
    elif m.group(1) == "conv":
      if fc:
        raise ValueError("convN cannot follow fcN")
      convs.append(int(m.group(2)))
    else:
      if convs and not fc:  # the last conv run, left unpooled
        sets.append(tuple(convs))
        convs, pool_last = [], False
      fc.append(int(m.group(2)))
  if convs:
    raise ValueError("a run of convN layers must end in 'pool' or be followed by fcN")
  if not sets and not fc:
    raise ValueError("empty network")
  return NetSpec(tuple(sets), tuple(fc), pool_last)
