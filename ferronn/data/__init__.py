"""Data: frames with a key map and label masks, neighbour lists, batching, statistics, the DataModule."""

from .frames import KeyMap, read_frames  # noqa: F401
