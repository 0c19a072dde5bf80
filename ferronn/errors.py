"""Exceptions with messages a scientist can act on: each names the file, frame and key, and what was expected."""

import sys


class FerronnError(Exception):
    """Base class: every error ferronn raises on purpose (the CLIs print it in one line and exit non-zero)."""


class DataError(FerronnError, ValueError):
    """A data file, frame or label that cannot be used as it is."""


class ConfigError(FerronnError, ValueError):
    """A recipe or command-line setting with an unknown key, a wrong type or an impossible value."""


class CheckpointError(FerronnError, ValueError):
    """A file that is not a loadable ferronn checkpoint (or is tampered with, or of another kind)."""


class SimulationError(FerronnError, RuntimeError):
    """An MD run that left physical ground (non-finite numbers, atoms on top of each other); the message says
    which replica, at which step, and where the last good frame was saved."""


def where(path, frame=None, key=None) -> str:
    """Location prefix used by every data error: "file 'x.xyz', frame 3, key 'forces'"."""
    parts = [f"file '{path}'"]
    if frame is not None:
        parts.append(f"frame {frame}")
    if key is not None:
        parts.append(f"key '{key}'")
    return ", ".join(parts)


def cli_exit_code(action, *args) -> int:
    """Run a CLI's ``action``: a FerronnError becomes one line on stderr and exit code 2 (nothing else caught)."""
    try:
        action(*args)
    except FerronnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
