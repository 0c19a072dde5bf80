"""Plain-dataclass configuration from YAML: strict (unknown keys and wrong types name the key), with dotted
command-line overrides. Used by the training recipes and the MD/study recipes alike."""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Dict, List, Optional, Union

import yaml

from .errors import ConfigError


def _float_string(value) -> bool:
    """'1e-8': YAML 1.1 reads exponents without a dot as strings; a float setting accepts them."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _type_ok(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return True
    if origin is Union:
        return any(_type_ok(value, arg) for arg in typing.get_args(tp))
    if origin in (list, List):
        (arg,) = typing.get_args(tp) or (typing.Any,)
        return isinstance(value, list) and all(_type_ok(v, arg) for v in value)
    if origin in (dict, Dict):
        key_tp, value_tp = typing.get_args(tp) or (typing.Any, typing.Any)
        return isinstance(value, dict) and all(_type_ok(k, key_tp) and _type_ok(v, value_tp) for k, v in value.items())
    if tp is type(None):
        return value is None
    if tp is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or _float_string(value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is list:
        return isinstance(value, list)
    return isinstance(value, tp)


def _type_name(tp) -> str:
    """'float', 'list of list of float', 'str or None': the type as a recipe author reads it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin in (list, List):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, Dict):
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}" if args else "mapping"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_dict(cls, data: dict, source: str = "recipe", prefix: str = "", choices: Optional[dict] = None):
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix or 'top level'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (known: {sorted(names)})")
    kwargs = {}
    for name, value in data.items():
        tp, path = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value or {}, source, path + ".", choices)
            continue
        if not _type_ok(value, tp):
            raise ConfigError(
                f"{source}: key '{path}' must be {_type_name(tp)}, got {value!r} ({type(value).__name__})"
            )
        if choices and path in choices and value not in choices[path]:
            raise ConfigError(f"{source}: key '{path}' must be one of {choices[path]}, got {value!r}")
        kwargs[name] = float(value) if tp is float else value
    return cls(**kwargs)


def _set_path(tree: dict, dotted: str, value, source: str):
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: '{dotted}' does not name a recipe key")
    node[parts[-1]] = value


def load_config(cls, path: Optional[str] = None, overrides: Optional[dict] = None, choices: Optional[dict] = None):
    """Dataclass ``cls`` from YAML ``path`` (or its defaults) with dotted ``overrides`` applied; strict: unknown keys,
    wrong types and values outside ``choices`` raise ConfigError naming the key."""
    tree = dataclasses.asdict(cls())
    source = "defaults"
    if path is not None:
        source = f"recipe '{path}'"
        if not os.path.exists(path):
            raise ConfigError(f"{source}: no such file")
        try:
            with open(path) as handle:
                user = yaml.safe_load(handle) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML ({exc})") from None
        from_dict(cls, user, source, choices=choices)  # strict check of the file as written
        tree = _merge(tree, user)
    for dotted, value in (overrides or {}).items():
        _set_path(tree, dotted, value, "command line")
    return from_dict(cls, tree, source if not overrides else f"{source} + command line", choices=choices)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items, named: Optional[dict] = None) -> dict:
    """``--set key.path=value`` items → {'key.path': value}, values parsed as YAML (numbers, lists, booleans),
    then the CLI's named options ``named`` {'key.path': value} that were given (not None) on top."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"command line: --set '{item}' must look like key.path=value")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    overrides.update({k: v for k, v in (named or {}).items() if v is not None})
    return overrides


def resolve_device(name: str, key: str = "device"):
    """'auto' → CUDA when available, else CPU; anything else as torch understands it (``key`` names the setting)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} '{name}': CUDA is not available on this machine")
    return device
