"""Forces for MD: where Z* enters the step. F = F0 + Z*ᵀE(t) for every replica in one model call each.

The energy model gives U0 (eV), F0 (eV/Å) and the zero-field stress σ (eV/Å³); the Born model gives Z* (e),
refreshed every ``born_every`` steps (the same, possibly stale, Z* is used in the forces and in the dipole's
trapezoid, as docs/conventions.md says). E(t) comes from a schedule evaluated on the device. Each
model gets its own Verlet list (cutoff + skin). Pairs in the skin contribute exactly zero but cost model time
(a 0.5 Å skin on a 5 Å cutoff is ~1/3 more edges): on the CPU they are dropped every step (``prune``); on a GPU
that would read the pair count to the host, so there the models get them and the step has no host round trip
except the neighbour check every ``check_every`` steps.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch

from .. import keys as K
from ..data.verlet import VerletList
from ..field import FieldSchedule, field_forces
from .state import MDState

FieldFn = Callable[[torch.Tensor], torch.Tensor]  # time (fs, 0-d) → field (B, 3) in V/Å, or a FieldSchedule
# (then also a non-uniform field E_i at each atom: F_i = F0_i + Z*_iᵀE_i)


class ModelForces:
    """Callable ``state → state`` filling energy, forces, stress and born at the state's positions and time."""

    def __init__(self, energy_model, born_model=None, field: Optional[FieldFn] = None, skin: float = 0.5,
                 check_every: int = 1, born_every: int = 1, compute_stress: bool = True,
                 prune: Optional[bool] = None):
        if born_every < 1 or check_every < 1:
            raise ValueError("born_every and check_every must be >= 1")
        self.energy_model, self.born_model, self.field = energy_model, born_model, field
        self.born_every, self.check_every, self.compute_stress = born_every, check_every, compute_stress
        self.lists = {"energy": VerletList(energy_model.r_max, skin)}
        if born_model is not None:
            self.lists["born"] = VerletList(born_model.r_max, skin)
        self._edges = {}
        self.prune = prune  # None: decided per device (CPU yes, GPU no), see the module docstring
        self.calls = 0
        self.timed = False  # when True, model_seconds accumulates the wall time inside the model calls
        self.model_seconds = 0.0
        self.dangerous_builds = 0  # checks that found a list already past its guarantee (raise skin or check more)
        # Committee models only: per-replica spread of the last call, on the device (no host sync):
        # 'forces' = max over atoms of |σ_F| (eV/Å), 'born' = max over atoms and components of σ_Z* (e).
        self.spread = {}

    def _clock(self, state: MDState, start: Optional[float] = None) -> Optional[float]:
        """Benchmark timer around a model call (synchronises CUDA, so only when ``timed``)."""
        if not self.timed:
            return None
        if state.positions.device.type == "cuda":
            torch.cuda.synchronize(state.positions.device)
        now = time.perf_counter()
        if start is not None:
            self.model_seconds += now - start
        return now

    def state_dict(self) -> dict:
        """Force calls and each built Verlet list with its edges (the layout of restart files, version 1)."""
        lists = {kind: {"edges": self._edges[kind][0], "shifts": self._edges[kind][1], **nl.state_dict()}
                 for kind, nl in self.lists.items() if kind in self._edges}
        return {"force_calls": torch.tensor(self.calls), "lists": lists}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["force_calls"])
        for kind, saved in state["lists"].items():
            self.lists[kind].load_state_dict(saved)
            self._edges[kind] = (saved["edges"], saved["shifts"])

    @property
    def rebuilds(self) -> int:
        return self.lists["energy"].builds

    def _batch(self, state: MDState, kind: str) -> dict:
        nl = self.lists[kind]
        if kind not in self._edges or self.calls % self.check_every == 0:
            rebuild = kind not in self._edges
            if not rebuild:
                # With sparse checks, rebuild while half the skin is left so the steps until the next check
                # stay covered; a list already past its guarantee is counted (raise the skin or check more often).
                fraction = 1.0 if self.check_every == 1 else 0.5
                rebuild = bool(nl.stale(state.positions, state.cell, state.batch, fraction))
                if rebuild and fraction < 1.0 and bool(nl.stale(state.positions, state.cell, state.batch)):
                    self.dangerous_builds += 1
            if rebuild:
                self._edges[kind] = nl.build(state.positions, state.cell, state.pbc, state.ptr, loc="MD: ")
        edge_index, shifts = self._edges[kind]
        if self.prune if self.prune is not None else state.positions.device.type == "cpu":
            edge_index, shifts = nl.within_cutoff(state.positions, state.cell, state.batch, edge_index, shifts)
        return {**state.batch_dict(), K.EDGE_INDEX: edge_index, K.UNIT_SHIFTS: shifts.to(state.positions.dtype)}

    def __call__(self, state: MDState) -> MDState:
        batch = self._batch(state, "energy")
        clock = self._clock(state)
        out = self.energy_model(batch, compute_forces=True, compute_stress=self.compute_stress)
        self._clock(state, clock)
        forces = out[K.FORCES].detach()
        if K.FORCES_STD in out:
            self.spread["forces"] = per_replica_max(out[K.FORCES_STD].detach().norm(dim=-1), state)
        field = state.field if self.field is None else self.field(state.time).expand_as(state.field)
        atom_field = None
        if isinstance(self.field, FieldSchedule) and self.field.nonuniform:
            atom_field = self.field.atom_field(field, state.positions, state.batch, state.time)
        born = state.born
        if self.born_model is not None:
            if born is None or self.calls % self.born_every == 0:
                batch = self._batch(state, "born")
                clock = self._clock(state)
                with torch.no_grad():
                    born_out = self.born_model(batch)
                born = born_out[K.BORN_CHARGES]
                if K.BORN_CHARGES_STD in born_out:
                    self.spread["born"] = per_replica_max(born_out[K.BORN_CHARGES_STD].flatten(1).amax(dim=1), state)
                self._clock(state, clock)
            per_atom = field.to(born.dtype)[state.batch] if atom_field is None else atom_field.to(born.dtype)
            forces = forces + field_forces(born, per_atom)
        self.calls += 1
        stress = out[K.STRESS].detach() if self.compute_stress else torch.zeros_like(state.cell)
        return state.replace(energy=out[K.ENERGY].detach(), forces=forces, stress=stress, born=born, field=field,
                             atom_field=atom_field)


def per_replica_max(values: torch.Tensor, state: MDState) -> torch.Tensor:
    """Largest per-atom value (N,) of each replica (B,)."""
    out = torch.zeros(state.num_replicas, dtype=values.dtype, device=values.device)
    return out.scatter_reduce(0, state.batch, values, reduce="amax", include_self=False)
