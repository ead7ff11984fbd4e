"""tyro's parse errors as the one line the CLI prints (`--flag: what is allowed`).

tyro reports a bad command line as a boxed, multi-line message (or, from 1.0, as structured
events); no library turns either into one line naming the flag, so this does.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

_BOX = re.compile(r"[│╭╮╰╯─┌┐└┘]")


def tyro_message(text: str) -> str:
  """The body of tyro's boxed error (title and help hints dropped), on one line."""
  body = []
  for raw in text.splitlines():
    if "╭" in raw or "╰" in raw:  # top border holds the title; bottom ends the box
      continue
    line = _BOX.sub("", raw).strip()
    if not line and body:
      break
    if "─" in raw and not line:  # a separator rule: the message is over
      if body:
        break
      continue
    if line.startswith(("For full helptext", "Argument helptext")):
      break
    if line:
      body.append(line)
  msg = " ".join(body) or " ".join(_BOX.sub("", text).split())[:300]
  # "Error parsing Config: --epochs: must be ..." / "Error parsing --epochs: ..." -> "--epochs: ..."
  return re.sub(r"^Error parsing (?:[A-Za-z_]+: )?", "", msg)


class Rejected(Exception):
  """tyro rejected the command line; the message is our one line."""


def flags_of(config_type: type) -> list[str]:
  out = []
  for f in dataclasses.fields(config_type):
    out.append("--" + f.name.replace("_", "-"))
    if f.type in (bool, "bool"):
      out.append("--no-" + f.name.replace("_", "-"))
  return out


def event_message(event: Any, flags: list[str]) -> str | None:
  """One line from tyro's structured parse-error event (None: let tyro report it)."""
  kind = type(event).__name__
  try:
    flag = event.argument.lowered.name_or_flags[0]
  except Exception:  # no argument on this event, or tyro's internals moved
    flag = None
  if kind == "UnrecognizedArgs":
    opts = [t.split("=")[0] for t in event.tokens if t.startswith("-")]
    if not opts:
      return f"unexpected value {event.tokens[0]!r} (each flag takes one value; see --help)"
    near = difflib.get_close_matches(opts[0], flags, n=1, cutoff=0.6)
    return f"{opts[0]}: unrecognized flag; " + (f"did you mean {near[0]}?" if near
                                                 else "see --help for the flags")
  if kind == "InvalidChoice":
    return f"{flag}: must be one of {', '.join(event.choices)}, got {event.value!r}"
  if kind == "InstantiationFailure":
    msg = event.message.strip().splitlines()[0] if event.message.strip() else "invalid value"
    union = re.match(r"no type matching (\S+) could be instantiated from \[(.*)\]", msg)
    if union:  # a flag of several types (--seeds INT|{auto}): say them as the help does
      kinds = {"INT": "an integer", "FLOAT": "a number", "STR": "a string"}
      allowed = [kinds.get(k, k.strip("{}")) for k in union.group(1).split("|")]
      msg = f"must be {' or '.join(allowed)}, got {union.group(2)}"
    return msg if msg.startswith("--") or not flag else f"{flag}: {msg}"
  if kind == "BadValue":
    return f"{flag}: cannot take the value {event.offending_value!r}" if flag else None
  return None
