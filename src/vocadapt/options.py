"""Method options from the command line and YAML, generated from config dataclasses.

Each init method declares its options once, as a dataclass whose fields carry help text in
``field(metadata={"help": ...})``. The CLI does not repeat them: ``vocadapt init ... --method
focus --aux-corpus a.txt b.txt --top-k 10`` hands ``["--aux-corpus", "a.txt", "b.txt", ...]`` to
:func:`parse_options`, which converts values by the field's type (lists take every value up to
the next ``--option``; booleans are flags or take true/false).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from vocadapt.errors import VocadaptError, did_you_mean


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(scalar type, is_list) of a field annotation such as ``list[str] | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if args else (str, False)
    if origin in (list, tuple, typing.Sequence):
        args = typing.get_args(tp)
        return (args[0] if args else str), True
    return tp, False


def _convert(value: str, tp: Any, option: str) -> Any:
    try:
        if tp is bool:
            low = value.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return low in ("true", "1", "yes")
        if tp in (int, float):
            return tp(value)
        return value
    except ValueError:
        raise VocadaptError(f"--{option}: cannot read {value!r} as {getattr(tp, '__name__', tp)}") from None


def field_types(config_cls: type) -> dict[str, tuple[Any, bool]]:
    hints = typing.get_type_hints(config_cls)
    # Fields with init=False are derived state, not options.
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(config_cls) if f.init}


def parse_options(args: list[str], config_cls: type, method: str) -> dict[str, Any]:
    """Turn ``['--top-k', '10', '--aux-corpus', 'a', 'b']`` into ``{'top_k': 10, 'aux_corpus': ['a', 'b']}``."""
    kinds = field_types(config_cls)
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise VocadaptError(f"unexpected argument {arg!r} (method options look like --name value)")
        name, _, inline = arg[2:].partition("=")
        key = name.replace("-", "_")
        if key not in kinds:
            opts = [k.replace("_", "-") for k in kinds]
            hint = did_you_mean(name, opts) or (f"; its options: --{', --'.join(opts)}" if opts else "; it takes no options")
            raise VocadaptError(f"method {method!r} has no option --{name}{hint}")
        values = [inline] if inline else []
        i += 1
        while not inline and i < len(args) and not args[i].startswith("--"):
            values.append(args[i])
            i += 1
        tp, is_list = kinds[key]
        if is_list:
            out[key] = [_convert(v, tp, name) for v in values]
        elif tp is bool and not values:
            out[key] = True
        elif len(values) != 1:
            raise VocadaptError(f"--{name} takes one value, got {len(values)}")
        else:
            out[key] = _convert(values[0], tp, name)
    return out


def describe(config_cls: type) -> list[tuple[str, str, str]]:
    """(option, default, help) rows for ``vocadapt methods``."""
    rows = []
    for f in (f for f in dataclasses.fields(config_cls) if f.init):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required"  # type: ignore[misc]
        )
        rows.append((f"--{f.name.replace('_', '-')}", repr(default), f.metadata.get("help", "")))
    return rows


def with_config(config_cls: type, *, exclude: tuple[str, ...] = (), required: tuple[str, ...] = ()):
    """Give a typer command one ``--option`` per field of ``config_cls`` and pass it ``config=``.

    Defaults and help text stay in the dataclass, the one place they are written; the command
    declares only its own arguments (paths, output) plus a ``config`` parameter. ``required``
    fields become mandatory options; ``exclude``d fields keep their dataclass defaults.
    """
    import functools
    import inspect

    import typer

    hints = typing.get_type_hints(config_cls)

    def decorate(fn):
        sig = inspect.signature(fn)
        # typer resolves annotations in the *wrapper's* module; give it concrete types instead of
        # the command's (possibly postponed, string) annotations.
        own = [
            p.replace(annotation=eval(p.annotation, fn.__globals__) if isinstance(p.annotation, str) else p.annotation)  # noqa: S307
            for p in sig.parameters.values()
            if p.name != "config"
        ]
        added = []
        names = []
        for f in dataclasses.fields(config_cls):
            if f.name in exclude:
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name in required:
                default = ...
            elif f.default is not dataclasses.MISSING:
                default = f.default
            else:
                default = f.default_factory()  # type: ignore[misc]
            decls = [f"{flag}/--no-{flag[2:]}"] if hints[f.name] is bool else [flag]
            option = typer.Option(default, *decls, help=f.metadata.get("help", ""))
            added.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hints[f.name]))
            names.append(f.name)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            values = {n: kwargs.pop(n) for n in names if n in kwargs}
            try:
                config = config_cls(**values)
            except (TypeError, ValueError) as e:
                raise VocadaptError(str(e)) from None
            return fn(*args, config=config, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=own + added, return_annotation=None)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
        return wrapper

    return decorate
