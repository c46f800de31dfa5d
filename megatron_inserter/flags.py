"""One way to declare a command's flags: a dataclass whose fields are the flags.

    @dataclass
    class SynthFlags:
        input: list = arg([], "jsonl files, globs or directories", required=True, metavar="PATH")
        workers: int = arg(1, "worker processes on this node")
        tts: str = arg("espeak", "speech backend", choices=["espeak", "nemo"])

    def main(argv=None) -> int:
        return run_command("inserter synth", SynthFlags, _run, argv, description=__doc__)

Every field ``name`` is the flag ``--name`` (underscores become dashes) and, with a ``config`` field, the
YAML key ``name`` of ``--config FILE``; the command line wins over the file. Booleans take
``--flag`` / ``--no-flag``; ``list`` fields take one or more values (``nargs="+"``) or, with
``repeat=True``, one value per repetition. Help shows each default once and says "required" where a flag
is. Unknown flags, abbreviations, unknown YAML keys and missing required values are ``UsageError`` naming
the flag, with "did you mean" when a known flag is close.

``run_command`` is the one error path of every subcommand: a project error (``InserterError``), an
``OSError`` or a data error becomes one line ``inserter <cmd>: error: ...`` on stderr and an exit status;
``--debug`` (or ``INSERTER_DEBUG=1``) shows the traceback instead. This module imports only the standard
library, so ``--help`` never loads torch or megatron-core.
"""

from __future__ import annotations

import argparse
import difflib
import os
import pickle
import sys
import tarfile
import typing
import zlib
from collections.abc import Callable, Sequence
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any, TypeVar

from megatron_inserter.errors import InserterError, UsageError

T = TypeVar("T")
_SCALARS = (int, float, str, bool, list)


def arg(default: Any = MISSING, help: str = "", *, choices: Sequence | None = None, required: bool = False,
        metavar: str | None = None, repeat: bool = False, positional: bool = False, group: str | None = None):
    """A dataclass field that is also a flag (see the module docstring)."""
    meta = {"help": help, "choices": list(choices) if choices else None, "required": required,
            "metavar": metavar, "repeat": repeat, "positional": positional, "group": group}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=None if default is MISSING else default, metadata=meta)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kind(hint: Any) -> type:
    """int/float/str/bool/list from a field's annotation (``X | None`` is X)."""
    if hint in _SCALARS:
        return hint
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return list
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1:
        return _kind(args[0])
    raise TypeError(f"flag type {hint!r} is not supported (use int, float, str, bool or list)")


def _spec(cls) -> dict[str, tuple[Any, type]]:
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return {f.name: (f, _kind(hints[f.name])) for f in fields(cls) if f.init and "help" in f.metadata}


def default_of(f) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


class FlagParser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (with "did you mean") instead of exiting."""

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            hints = []
            for word in message.split(":", 1)[1].split():
                if word.startswith("-"):
                    close = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.6)
                    if close:
                        hints.append(f"{word} -> {close[0]}")
            if hints:
                message += f" (did you mean: {', '.join(hints)})"
        raise UsageError(message)


def is_required(cls, name: str, f) -> bool:
    """Whether flag ``name`` must be given: its ``arg(required=...)``, unless ``cls`` names it in a class
    attribute ``optional_flags`` (a command that extends another command's flags without all of its needs)."""
    return bool(f.metadata["required"]) and name not in getattr(cls, "optional_flags", ())


def add_flags(parser: argparse.ArgumentParser, cls) -> None:
    """Add the flags of dataclass ``cls`` to ``parser`` (grouped by ``arg(group=...)``)."""
    groups: dict[str, Any] = {}
    for name, (f, kind) in _spec(cls).items():
        meta = f.metadata
        required = is_required(cls, name, f)
        target = parser
        if meta["group"]:
            target = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        default = default_of(f)
        if required:
            suffix = " (required)"
        elif default is None or default == [] or default == "":
            suffix = ""
        else:
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            suffix = f" (default: {shown})"
        kwargs: dict[str, Any] = {"help": (meta["help"] + suffix).strip()}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind is list:
            kwargs.update(action="append") if meta["repeat"] else kwargs.update(nargs="+")
            kwargs["metavar"] = meta["metavar"] or "STR"
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
        else:
            kwargs["type"] = kind
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            else:
                kwargs["metavar"] = meta["metavar"] or {int: "N", float: "X", str: "STR"}[kind]
        if meta["positional"]:
            kwargs.pop("metavar", None) if kind is not list else None
            if kind is list:
                kwargs["nargs"] = "+" if required else "*"
                kwargs.pop("action", None)
            elif not required:
                kwargs["nargs"] = "?"
            target.add_argument(name, **kwargs)
        else:
            target.add_argument(flag_name(name), dest=name, **kwargs)


def build_parser(cls, prog: str, description: str | None = None) -> FlagParser:
    parser = FlagParser(prog=prog, description=_first_paragraph(description), allow_abbrev=False,
                        argument_default=argparse.SUPPRESS, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, cls)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def _first_paragraph(text: str | None) -> str | None:
    return text.strip().split("\n\n")[0] if text else None


def coerce(name: str, kind: type, value: Any, origin: str, choices=None) -> Any:
    """A YAML (or JSON) value -> the flag's type, or a ``UsageError`` naming the key."""
    if value is None:
        return None
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            out = value
        elif kind is list:
            if isinstance(value, str):
                return value.split()
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return [str(v) for v in value]
        else:
            if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
                raise TypeError
            if kind is str and not isinstance(value, str):
                raise TypeError
            out = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{origin}: {name}: {value!r} is not a valid {kind.__name__}") from None
    if choices and out not in choices:
        raise UsageError(f"{origin}: {name}: {out!r} is not one of {choices}")
    return out


def load_config_file(path: str, cls) -> dict:
    """Flag values from a YAML mapping whose keys are field names (``--config``)."""
    import yaml

    spec = _spec(cls)
    if not os.path.isfile(path):
        raise UsageError(f"--config {path!r} does not exist")
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as e:
            raise UsageError(f"--config {path!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path!r} must hold a mapping of flag names to values")
    unknown = sorted(str(k) for k in data if str(k) not in spec or k == "config")
    if unknown:
        hint = [k for k in unknown if k.replace("-", "_") in spec]
        extra = f" (write {', '.join(k.replace('-', '_') for k in hint)} with underscores)" if hint else ""
        raise UsageError(f"--config {path!r}: unknown keys {unknown}{extra}")
    return {k: coerce(k, spec[k][1], v, f"--config {path!r}", spec[k][0].metadata["choices"]) for k, v in data.items()}


def parse_flags(cls: type[T], argv: Sequence[str], prog: str, description: str | None = None) -> T:
    """An instance of ``cls`` from a command line (and its ``--config`` file when ``cls`` has one)."""
    spec = _spec(cls)
    given = vars(build_parser(cls, prog, description).parse_args(list(argv)))
    given.pop("debug", None)
    values = {name: default_of(f) for name, (f, _) in spec.items()}
    if given.get("config") and "config" in spec:
        values.update(load_config_file(given["config"], cls))
    values.update(given)
    missing = [flag_name(n) if not f.metadata["positional"] else n.upper()
               for n, (f, _) in spec.items() if is_required(cls, n, f) and values[n] in (None, [])]
    if missing:
        where = " (on the command line or in --config)" if "config" in spec else ""
        raise UsageError(f"missing required arguments: {', '.join(missing)}{where}")
    return cls(**values)


def debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("INSERTER_DEBUG", "") not in ("", "0")


# Errors that are the input's fault, not a bug: one line, no traceback.
_INPUT_ERRORS: tuple[type[BaseException], ...] = (InserterError, OSError, EOFError, zlib.error, UnicodeError,
                                                  tarfile.TarError, pickle.UnpicklingError)


def error_line(prog: str, error: BaseException) -> str:
    """``prog: error: ...`` on one line; a library's error (not the project's own, not a file's) says how to
    see the traceback."""
    if isinstance(error, OSError) and error.filename and str(error.filename) not in str(error):
        text = f"{error.strerror or error}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    line = f"{prog}: error: {' '.join(text.split())}"
    if not isinstance(error, (InserterError, OSError)):  # a library's error: its origin may matter
        line += f" ({type(error).__name__}; --debug shows the traceback)"
    return line


def report_error(prog: str, error: BaseException) -> int:
    """Print the one error line for ``error`` on stderr and return the exit status."""
    print(error_line(prog, error), file=sys.stderr, flush=True)
    return getattr(error, "exit_code", 1)


def run_command(prog: str, cls: type[T], run: Callable[[T], int | None], argv: Sequence[str] | None = None,
                *, description: str | None = None) -> int:
    """Parse ``argv`` into ``cls`` and call ``run``; the one error path of every subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    if "-h" in argv or "--help" in argv:
        build_parser(cls, prog, description).print_help()
        return 0
    try:
        args = parse_flags(cls, argv, prog, description)
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except _INPUT_ERRORS + (ValueError,) as e:
        if debug:
            raise
        return report_error(prog, e)


def run_subcommands(prog: str, commands: dict[str, tuple[type, Callable[[Any], int | None], str]],
                    argv: Sequence[str] | None = None, *, description: str | None = None) -> int:
    """``prog NAME [flags]`` for several flag dataclasses: ``{name: (flags class, run, one-line help)}``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        width = max(map(len, commands))
        lines = [f"usage: {prog} <command> [options]", ""]
        if description:
            lines += [_first_paragraph(description), ""]
        lines += ["commands:"] + [f"  {n:<{width}}  {h}" for n, (_, _, h) in commands.items()]
        lines += ["", f"`{prog} <command> --help` describes a command's options."]
        print("\n".join(lines))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        close = difflib.get_close_matches(name, list(commands), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; choose from {', '.join(commands)}"
        print(f"{prog}: error: unknown command {name!r}{hint}", file=sys.stderr)
        return 2
    cls, run, help_ = commands[name]
    return run_command(f"{prog} {name}", cls, run, rest, description=help_)
