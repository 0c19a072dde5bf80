"""The LightningDataModule: read once, split (seeded fractions or explicit indices), build graphs, batch.

Graphs (with their vesin neighbour lists) are built once per frame on the CPU; training positions do not move,
so nothing is recomputed per epoch. Shuffling depends only on (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from typing import List, Optional, Union

import lightning as L
import numpy as np
import torch

from .. import keys as K
from ..errors import ConfigError, DataError
from .frames import KeyMap, read_frames
from .graph import SpeciesTable, collate, frame_to_graph
from .stats import compute_stats

#: Name of the embedded default dataset (real DFT computed for this project; provenance in its README.md).
DEFAULT_DATA = "BaTiO3_qe_pbe.xyz"


def default_data_path() -> str:
    """Path of the embedded BaTiO3 QE set shipped inside the package."""
    return str(resources.files("ferronn.data").joinpath("default", DEFAULT_DATA))

#: Frame indices: a list of ints or a string of ranges like "0-41, 45, 50-52" (inclusive).
Indices = Optional[Union[str, List[int]]]


@dataclasses.dataclass
class SplitConfig:
    """Train/val/test split: explicit frame indices where given, otherwise random (seeded) fractions/counts.

    Order: test = test_indices, else the separate ``data.test_path`` file, else a random part of ``indices``;
    val = val_indices, else a random part of what remains; train = the rest.
    """

    indices: Indices = None  # frames available for train/val/test (default: all)
    train_indices: Indices = None
    val_indices: Indices = None
    test_indices: Indices = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    val_count: Optional[int] = None  # overrides val_fraction
    test_count: Optional[int] = None  # overrides test_fraction
    seed: Optional[int] = None  # seed of the random split (default: train.seed; a committee keeps one split)


@dataclasses.dataclass
class DataConfig:
    path: Optional[str] = None  # ASE-readable file; None = the embedded BaTiO3 QE set shipped in the package
    test_path: Optional[str] = None  # optional separate test file (same key map)
    # files whose frames always go to the training split, never to val or test (same key map): e.g. MD snapshots
    # labelled by a teacher committee (python -m ferronn.label.teacher); statistics include them
    extra_train_paths: List[str] = dataclasses.field(default_factory=list)
    keys: KeyMap = dataclasses.field(default_factory=KeyMap)
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    batch_size: int = 4
    val_batch_size: int = 8




def parse_indices(spec, source="recipe") -> Optional[list]:
    """"0-3, 7" → [0, 1, 2, 3, 7]; a list passes through; None stays None."""
    if spec is None or isinstance(spec, list):
        return spec
    out = []
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-")
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigError(f"{source}: cannot read frame indices '{spec}' (expected e.g. '0-41, 45')") from None
    return out


def _pick(rng, pool, count):
    chosen = sorted(rng.choice(pool, size=count, replace=False).tolist()) if count else []
    return chosen, [i for i in pool if i not in set(chosen)]


def split_indices(n_frames: int, split: SplitConfig, seed: int, has_test_file: bool, source="recipe"):
    """(train, val, test) frame indices; random parts drawn with numpy's generator seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    pool = parse_indices(split.indices, source) or list(range(n_frames))
    explicit = {name: parse_indices(getattr(split, f"{name}_indices"), source) for name in ("train", "val", "test")}
    for name, idx in list(explicit.items()) + [("", pool)]:
        bad = [i for i in (idx or []) if not 0 <= i < n_frames]
        if bad:
            raise ConfigError(f"{source}: {name + '_' if name else ''}indices {bad[:5]} outside 0..{n_frames - 1}")
    if explicit["test"] is not None:
        test = explicit["test"]
        pool = [i for i in pool if i not in set(test)]
    elif has_test_file:
        test = []
    else:
        count = split.test_count if split.test_count is not None else int(round(split.test_fraction * len(pool)))
        test, pool = _pick(rng, pool, count)
    if explicit["val"] is not None:
        val = explicit["val"]
        pool = [i for i in pool if i not in set(val)]
    else:
        count = split.val_count if split.val_count is not None else max(1, int(round(split.val_fraction * len(pool))))
        if count > len(pool):
            raise DataError(f"{source}: asked for {count} validation frames but only {len(pool)} remain")
        val, pool = _pick(rng, pool, count)
    train = explicit["train"] if explicit["train"] is not None else pool
    if set(train) & set(val) or set(train) & set(test) or set(val) & set(test):
        raise ConfigError(f"{source}: train, val and test frame indices overlap")
    return train, val, test


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Random order that depends only on (seed, epoch): resuming at epoch k replays epoch k's order."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch start
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Batches of ``batch_size`` structures in the order of ``sampler``; under DDP with ``world`` processes, rank
    ``rank`` gets every world-th structure of each global batch. The processes together see exactly the batches
    one process would, and DDP's gradient average is the one-process gradient (exactly for equal-size structures),
    so a DDP run follows the single-process run. A last batch too small to give every rank a structure is
    dropped under DDP (a rank without a batch would stall the others)."""

    def __init__(self, sampler: EpochShuffleSampler, batch_size: int, rank: int = 0, world: int = 1):
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world

    def _global_batches(self):
        order = list(self.sampler)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [b for b in batches if len(b) >= self.world]

    def __len__(self):
        return len(self._global_batches())

    def __iter__(self):
        for batch in self._global_batches():
            yield batch[self.rank::self.world]


class FrameDataModule(L.LightningDataModule):
    """Train/val/test graphs of labelled frames, batched into the ``ferronn.keys`` schema."""

    def __init__(self, config: DataConfig, r_max: float, seed: int = 0, dtype: torch.dtype = torch.float64,
                 labels_needed=(K.ENERGY, K.FORCES), atomic_numbers=None):
        super().__init__()
        self.config, self.r_max, self.seed, self.dtype = config, float(r_max), seed, dtype
        self.labels_needed = tuple(labels_needed)
        self.atomic_numbers = atomic_numbers  # species table (from a checkpoint); None = from the data
        self.graphs = None

    @property
    def path(self) -> str:
        return self.config.path or default_data_path()

    def prepare(self) -> "FrameDataModule":
        """Read, validate, split and build graphs (idempotent); sets .stats from the training frames."""
        if self.graphs is not None:
            return self
        frames = read_frames(self.path, self.config.keys, labels_needed=self.labels_needed)
        test_frames = []
        if self.config.test_path:
            test_frames = read_frames(self.config.test_path, self.config.keys, labels_needed=self.labels_needed)
        source = f"data split of '{self.path}'"
        split_seed = self.seed if self.config.split.seed is None else self.config.split.seed
        train, val, test = split_indices(len(frames), self.config.split, split_seed, bool(test_frames), source)
        for name, idx in (("train", train), ("val", val)):
            if not idx:
                raise DataError(f"{source}: the {name} split is empty ({len(frames)} frames in the file)")
        if not test and not test_frames:
            raise DataError(f"{source}: the test split is empty; set split.test_indices or data.test_path")
        self.split = {"train": train, "val": val, "test": test}
        extra = [f for path in self.config.extra_train_paths for f in self._read_extra(path)]
        numbers = self.atomic_numbers or sorted({int(z) for f in frames + test_frames + extra
                                                 for z in f[K.ATOMIC_NUMBERS]})
        self.species = SpeciesTable(numbers)
        to_graph = functools.partial(frame_to_graph, species=self.species, r_max=self.r_max)
        self.graphs = {name: [to_graph(frames[i]) for i in idx] for name, idx in self.split.items()}
        self.graphs["train"] += [to_graph(f) for f in extra]
        if test_frames:
            self.graphs["test"] = self.graphs["test"] + [to_graph(f) for f in test_frames]
        self.test_frames = [frames[i] for i in test] + test_frames  # numpy frames, for reference-data reports
        self.stats = compute_stats([frames[i] for i in train] + extra, self.graphs["train"], numbers)
        return self

    def _read_extra(self, path: str) -> list:
        """Frames of one ``extra_train_paths`` file; it must carry at least one label the models are fitted to."""
        frames = read_frames(path, self.config.keys)
        if self.labels_needed and not any(label in f for f in frames for label in self.labels_needed):
            raise DataError(f"file '{path}' (data.extra_train_paths): no frame carries any of the labels "
                            f"{list(self.labels_needed)} under the recipe's keys; expected labelled training frames")
        return frames

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare()

    def _loader(self, name, batch_size, shuffle):
        graphs = self.graphs[name]
        collate_fn = functools.partial(collate, dtype=self.dtype)
        if not shuffle:  # val/test: every process evaluates all of it (identical metrics on every rank)
            return torch.utils.data.DataLoader(graphs, batch_size=batch_size, collate_fn=collate_fn, num_workers=0)
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = GlobalBatchSampler(EpochShuffleSampler(len(graphs), self.seed), batch_size, rank, world)
        # num_workers=0: graphs are prebuilt; collating is cheaper than worker start-up
        return torch.utils.data.DataLoader(graphs, batch_sampler=sampler, collate_fn=collate_fn, num_workers=0)

    def train_dataloader(self):
        return self._loader("train", self.config.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._loader("val", self.config.val_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._loader("test", self.config.val_batch_size, shuffle=False)
