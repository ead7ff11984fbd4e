"""--help for a Config: the description and examples first, then the flags in groups.

tyro parses the command line; its help lists a flat dataclass's 40 fields as one
box in declaration order and has no way to group them, so the help text is made
here from the same dataclass: each field's flag, type or choices, default and
docstring (read from the source, as tyro reads it), under the group its field is
tagged with in config.py. --help shows the experiment's own flags and the common
ones (a screen); --help-all every flag. Flags the experiment refuses are not shown.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing

GROUP_ORDER = ("training", "data", "outputs", "run control", "scale-out")
# What --help shows besides an experiment's own flags (--help-all: every flag).
COMMON = ("epochs", "seeds", "max_seeds", "seed_budget", "seed", "dataset", "data_dir", "train_size", "net", "dropout",
          "optimizer", "learning_rate", "batch_size", "variants", "workdir", "restart",
          "precision", "devices", "platform")


def field_docs(cls: type) -> dict[str, str]:
  """Attribute docstrings (the string literal under each field) of cls and its bases."""
  docs: dict[str, str] = {}
  for klass in reversed(cls.__mro__):
    try:
      tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
    except (OSError, TypeError, SyntaxError):
      continue
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for stmt, nxt in zip(body, body[1:]):
      if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
          and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
          and isinstance(nxt.value.value, str)):
        docs[stmt.target.id] = " ".join(nxt.value.value.split())
  return docs


def _kind(f: dataclasses.Field, hints: dict) -> str:
  t = hints.get(f.name, f.type)
  if typing.get_origin(t) is typing.Literal:
    return "{" + ",".join(str(a) for a in typing.get_args(t)) + "}"
  names = {int: "INT", float: "FLOAT", str: "STR", bool: ""}
  if t in names:
    return names[t]
  args = [a for a in typing.get_args(t) if a is not type(None)]
  if any(typing.get_origin(a) is typing.Literal for a in args):  # INT|auto
    return "|".join(",".join(map(str, typing.get_args(a))) if typing.get_origin(a)
                    is typing.Literal else names.get(a, "VALUE") for a in args)
  return names.get(args[0], "VALUE") if args else "VALUE"


def render(default, prog: str, description: str | None, width: int = 100, *,
           hidden: frozenset[str] = frozenset(), full: bool = True) -> str:
  """The help text; `hidden`: fields the experiment refuses; `full`: every flag, else the
  experiment's own and COMMON."""
  cls = type(default)
  docs, hints = field_docs(cls), typing.get_type_hints(cls)
  own = lambda f: "group" not in f.metadata  # noqa: E731 (an experiment's fields have no tag)
  fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in hidden
            and (full or own(f) or f.name in COMMON)}
  grouped: dict[str, list[str]] = {}
  for g in ("this experiment", *GROUP_ORDER):
    grouped[g] = [n for n, f in fields.items() if f.metadata.get("group", "this experiment") == g]
  grouped = {(g if g != "scale-out" else "scale-out (devices and hosts)"): names
             for g, names in grouped.items() if names}
  out = [f"usage: {prog} [-h] [OPTIONS]", ""]
  if description:
    out += [description, ""]
  for group, names in grouped.items():
    out.append(f"{group}:")
    for n in names:
      f, flag = fields[n], "--" + n.replace("_", "-")
      kind = _kind(f, hints)
      head = f"{flag}/--no-{flag[2:]}" if kind == "" else f"{flag} {kind}"
      doc = docs.get(n, "")  # a docstring that states its default says it once
      text = doc if "(default:" in doc else f"{doc} (default: {getattr(default, n)!r})".strip()
      wrapped = textwrap.wrap(text, width - 26) or [""]
      if len(head) > 22:
        out.append(f"  {head}")
        out += [" " * 26 + line for line in wrapped]
      else:
        out.append(f"  {head:<22}  {wrapped[0]}")
        out += [" " * 26 + line for line in wrapped[1:]]
    out.append("")
  out.append("  -h, --help              show this help message and exit")
  if not full:
    more = len(dataclasses.fields(cls)) - len(fields) - len(hidden)
    out.append(f"  --help-all              every flag ({more} more: logging, checkpoints, "
               "scale-out, ...)")
  else:
    out.append("  --help-all              this list")
  if hidden:
    out += ["", "Set by this experiment's variants (refused as flags): "
            + ", ".join("--" + n.replace("_", "-") for n in sorted(hidden)) + "."]
  return "\n".join(out) + "\n"
