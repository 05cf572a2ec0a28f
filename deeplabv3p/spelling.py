"""How an error's fix names an argument: as Python (``checkpoint_path="w.pth"``) or, when the error is raised under
a ``deeplabv3p`` command, as that command's flag (``--checkpoint w.pth``).

Messages are written once, with `arg` / `call` where they name an argument; the CLI runs each command inside
`command_line(flags)`, so the same message reads right in both places. Keywords without a flag of their own are
spelt as their own flag (``batch_size``: ``--batch-size``) where the command has one, else as ``--model-kwargs
KEY=VALUE`` where the command has that flag, else as Python.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# create_model keyword -> the flags that set it, in order of preference (train and evaluate have no --checkpoint:
# their --pretrained takes a file as well).
_FLAGS: dict[str, tuple[str, ...]] = {
    "model_name": ("--model",),
    "checkpoint_path": ("--checkpoint", "--pretrained"),
    "pretrained": ("--pretrained",),
    "encoder_pretrained": ("--encoder-pretrained",),
    "input_size": ("--size",),
}
_MODEL_KWARGS = "--model-kwargs"
_PLAIN = re.compile(r"[\w@%+=:,./-]+")
_flags: ContextVar[dict[str, str] | None] = ContextVar("deeplabv3p_cli_flags", default=None)


@contextmanager
def command_line(flags: Collection[str] | Mapping[str, str]) -> Iterator[None]:
    """Spell arguments as the given flags of the running command (its option strings) for the duration; a mapping
    gives each flag's separator of several values (``"x"`` for ``512x1024``, ``","`` for ``4,3,2``; default:
    separate words, as ``nargs`` takes them)."""
    token = _flags.set(dict(flags) if isinstance(flags, Mapping) else dict.fromkeys(flags, " "))
    try:
        yield
    finally:
        _flags.reset(token)


def command_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """The option strings of `command`, a sub-command of `parser`, each with the separator its values are written
    with (what `command_line` takes): the ``separator`` attribute of the flag's type (the CLI's ``HxW`` and
    ``B,B,B`` parsers declare theirs), else a space."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            own = action.choices[command]._option_string_actions
            return {flag: getattr(a.type, "separator", " ") for flag, a in own.items()}
    return {}


def _shell(text: str) -> str:
    """`text` as one shell word: bare when plain, else in double quotes (Python literals rarely hold ``"``)."""
    if _PLAIN.fullmatch(text):
        return text
    return '"' + re.sub(r'(["$`\\])', r"\\\1", text) + '"'


class Placeholder(str):
    """A value the user fills in (``N``, ``FILE``), written as it is in both spellings."""


def _literal(value: Any) -> str:
    """`value` as Python source, strings in double quotes as the README writes them."""
    if isinstance(value, Placeholder):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def arg(name: str, value: Any) -> str:
    """``name=value`` (the value as a Python literal), or under a command its flag: ``--flag value`` (ints as the
    flag writes them: ``64x64``, ``4,3,2``, ``64 64``), a bare ``--flag`` for True, ``without --flag`` for False, or
    ``--model-kwargs name=value``."""
    python = f"{name}={_literal(value)}"
    flags = _flags.get()
    if flags is None:
        return python
    own = "--" + name.replace("_", "-")  # a setting's own flag (--batch-size for batch_size), where it has one
    flag = next((f for f in _FLAGS.get(name, (own,)) if f in flags), None)
    if flag is None:
        return f"{_MODEL_KWARGS} {_shell(python)}" if _MODEL_KWARGS in flags else python
    if isinstance(value, bool):
        return flag if value else f"without {flag}"
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return f"{flag} {flags[flag].join(map(str, value))}"  # as the flag parses them: 64x64, 4,3,2 or 64 64
    return f"{flag} {_shell(str(value))}"


def call(model_name: str, **kwargs: Any) -> str:
    """``create_model("NAME", k=v, ...)``, or under a command ``--model NAME --flag v ...``. ``pretrained=True``
    has no flag of its own there: a command loads the weights of an ``ARCH.TAG`` by itself."""
    if _flags.get() is None:
        return "create_model(" + ", ".join([_literal(model_name), *(arg(k, v) for k, v in kwargs.items())]) + ")"
    words = [f"--model {_shell(model_name)}"]
    words += [arg(k, v) for k, v in kwargs.items() if not (k == "pretrained" and v is True)]
    return " ".join(words)
