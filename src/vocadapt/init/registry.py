"""The registry of embedding-initialization methods: one file per method, one signature.

A method is a plain function registered with :func:`register`::

    @register("mean", config=MeanConfig, paper="Gee et al. 2022 (FVT)")
    def mean_init(ctx: InitContext, source: torch.Tensor, config: MeanConfig) -> Rows: ...

It is called once per vocabulary matrix (the input embedding, then the untied head if there is
one) with that matrix of the source model (|V_s| x d, stored dtype) and returns
:class:`~vocadapt.init.context.Rows` for ``ctx.new_ids``. Copying overlapping rows, the random
fallback for rows a method has no signal for, padding, counting and writing are the framework's
job, so every method gets them right the same way. Method modules import their heavy extras
lazily, inside the function, so listing methods stays instant.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vocadapt.errors import VocadaptError, did_you_mean

# Modules that register methods, imported on first use of the registry.
_METHOD_MODULES = ("random", "mean", "focus", "wechsel", "ofa", "regression")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable[..., Any]
    config: type
    paper: str
    extras: tuple[str, ...]
    summary: str

    def make_config(self, options: dict[str, Any] | None = None) -> Any:
        """Build the method's config from options; unknown or ill-typed options get one line."""
        options = dict(options or {})
        known = {f.name: f for f in dataclasses.fields(self.config)}
        for key in options:
            if key not in known:
                hint = did_you_mean(key, known) or (f" (options: {', '.join(known)})" if known else " (it takes none)")
                raise VocadaptError(f"method {self.name!r} has no option {key!r}{hint}")
        try:
            return self.config(**options)
        except (TypeError, ValueError) as e:
            raise VocadaptError(f"method {self.name!r}: {e}") from None


_REGISTRY: dict[str, MethodSpec] = {}
_LOADED = False


@dataclass
class NoConfig:
    """A method without options."""


def register(name: str, *, config: type = NoConfig, paper: str = "", extras: tuple[str, ...] = ()):
    """Decorator that adds an init method to the registry (duplicate or malformed names fail)."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError(f"invalid method name {name!r}: use lowercase letters, digits, '-' and '_'")
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config of method {name!r} must be a dataclass")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"init method {name!r} is registered twice")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = MethodSpec(name, fn, config, paper, tuple(extras), summary)
        return fn

    return wrap


def _load() -> None:
    global _LOADED
    if not _LOADED:
        for mod in _METHOD_MODULES:
            try:
                importlib.import_module(f"vocadapt.init.{mod}")
            except ModuleNotFoundError as e:
                if e.name != f"vocadapt.init.{mod}":
                    raise
        _LOADED = True


def methods() -> dict[str, MethodSpec]:
    """All registered methods by name."""
    _load()
    return dict(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    _load()
    if name not in _REGISTRY:
        raise VocadaptError(f"unknown init method {name!r}{did_you_mean(name, _REGISTRY)}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
