"""Label a file of frames into an extxyz file, one frame at a time, resumable.

Every finished frame is appended atomically (the output is rewritten to a temporary file and renamed), so a
killed run loses at most the frame in progress. A rerun skips frames whose fingerprint (species, positions,
cell) is already in the output. A frame whose DFT run fails is recorded in ``<out>.failures.json`` with its
reason and the batch goes on; a rerun tries it again (the record goes once it succeeds).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Callable, Optional

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import DataError
from .config import LabelConfig
from .espresso import QEFailure, label_atoms

FINGERPRINT = "label_fingerprint"  # info key of each labelled frame: which input structure it is
SOURCE = "label_source"  # info key: index of the frame in the input file


def fingerprint(atoms) -> str:
    """Hash of species, positions and cell rounded to 1e-6 Å: the identity of a structure across reruns."""
    digest = hashlib.sha1()
    digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, np.asarray(atoms.cell)):
        digest.update(np.round(np.asarray(array, dtype=np.float64), 6).tobytes())
    return digest.hexdigest()[:16]


def failures_path(out: str) -> str:
    return out + ".failures.json"


def read_labelled(out: str) -> list:
    """Frames already in ``out`` (empty when it does not exist)."""
    import ase.io

    if not os.path.exists(out) or os.path.getsize(out) == 0:
        return []
    try:
        return ase.io.read(out, ":", format="extxyz")
    except Exception as exc:
        raise DataError(f"file '{out}': existing output is not readable extxyz ({exc}); move it away to start "
                        "again") from None


def append_frame(out: str, atoms) -> None:
    """Append ``atoms`` to ``out`` atomically: the old frames and the new one appear together or not at all."""
    import ase.io

    with atomic_path(out, ".xyz") as tmp:
        if os.path.exists(out):
            shutil.copyfile(out, tmp)
        ase.io.write(tmp, atoms, format="extxyz", append=True)


def read_failures(out: str) -> dict:
    """{fingerprint: record} of the frames whose DFT run failed (empty when none did)."""
    path = failures_path(out)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return {item["fingerprint"]: item for item in json.load(handle)}


def label_frames(frames, out: str, config: LabelConfig, sources=None, log: Callable[[str], None] = print,
                 labeller: Optional[Callable] = None) -> dict:
    """Label ``frames`` (ASE Atoms) into ``out``; returns {'labelled': n, 'skipped': n, 'failed': [records]}.

    ``sources`` gives each frame's index in its input file (default 0..n-1); ``labeller(atoms, workdir)``
    replaces QE (tests and dry runs).
    """
    config.validate()
    sources = list(range(len(frames))) if sources is None else list(sources)
    for atoms in frames:  # every element needs a pseudopotential: fail before the first expensive run
        for symbol in sorted(set(atoms.get_chemical_symbols())):
            config.qe.pseudopotential(symbol)
    if labeller is None:
        config.qe.check_executables(config.needs_ph)
        labeller = lambda atoms, workdir: label_atoms(atoms, config.qe, config.labels, workdir)  # noqa: E731
    done = {a.info.get(FINGERPRINT) for a in read_labelled(out)}
    failures = read_failures(out)
    scratch = config.workdir or out + ".work"
    summary = {"labelled": 0, "skipped": 0, "failed": []}
    for count, (source, atoms) in enumerate(zip(sources, frames), 1):
        key = fingerprint(atoms)
        if key in done:
            summary["skipped"] += 1
            continue
        workdir = os.path.join(scratch, f"frame{source:05d}-{key[:8]}")
        if os.path.exists(workdir):
            shutil.rmtree(workdir)  # leftovers of a killed run: QE must start clean
        start = time.perf_counter()
        try:
            labelled = labeller(atoms, workdir)
        except QEFailure as exc:
            record = {"fingerprint": key, "source": source, "reason": str(exc), "workdir": workdir,
                      "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            failures[key] = record
            write_json(failures_path(out), list(failures.values()))
            summary["failed"].append(record)
            log(f"frame {source} ({count}/{len(frames)}): FAILED — {exc} (inputs and outputs kept in {workdir})")
            continue
        labelled.info[FINGERPRINT] = key
        labelled.info[SOURCE] = source
        append_frame(out, labelled)
        done.add(key)
        summary["labelled"] += 1
        if failures.pop(key, None) is not None:
            write_json(failures_path(out), list(failures.values()))
        if not config.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        energy = labelled.calc.results.get("energy") if labelled.calc is not None else None
        log(f"frame {source} ({count}/{len(frames)}): labelled in {time.perf_counter() - start:.0f} s"
            + (f", E = {energy:.4f} eV" if energy is not None else ""))
    if os.path.isdir(scratch) and not os.listdir(scratch):
        os.rmdir(scratch)
    return summary
