"""The MD engine: replicas batched on one device, a step loop, on-the-fly observables, outputs and restarts.

    sim = Simulation.from_config(load_md_config("recipes/batio3_dielectric.yaml"))
    sim.run()                      # or sim.run(steps) from Python; sim.summary() → averages and ε

The loop itself is ``integrator(state, forces, dt)``; reading to the host happens only every ``log_every``
steps (CSV, progress bar), every ``guard_every`` steps (NaN / close-contact guard) and at neighbour checks.
Outputs in ``out/`` (written by ``md.outputs``): ``log.csv``, ``layers.csv`` (per-layer local polarization, with
``polarization_layers``), ``trajectory_r{b}.extxyz`` (ASE/OVITO-readable, unwrapped positions), ``restart.pt``
(tensors only, loaded with weights_only=True), ``summary.json`` and, if the guard stops a run, ``last_good.extxyz``;
all but the trajectories are written atomically.

Fields: ``FieldSchedule`` (``ferronn.field``) owns them: each replica's uniform E(t) and, with ``field_regions``,
``field_array`` or a ``local_field`` callable, the field E_i at each atom (``ferronn.local_field``); then the per-atom
dipoles are integrated too and H = K + U0 − Σ_i E_i·m_i.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Optional

import numpy as np
import torch

from .. import keys as K
from ..atomic import atomic_path, write_json
from ..data.graph import MIN_INTERATOMIC_DISTANCE, SpeciesTable, atoms_to_batch, neighbour_list
from ..data.verlet import pair_lengths
from ..errors import CheckpointError, ConfigError, DataError, SimulationError, where
from ..field import FieldSchedule, LocalFieldFn, TimeDependentField, field_energy, local_field_energy
from ..local_field import AXES, check_local_fn, local_amplitudes, parse_regions
from ..config import resolve_device
from ..models import check_compatible
from ..models.checkpoint import atomic_torch_save
from ..units import AMU_A2_PER_FS2_IN_EV, E_PER_A2_TO_UC_PER_CM2, EV_PER_A3_TO_GPA, KB_EV_PER_K, atomic_masses
from . import integrators
from .config import MDConfig
from .forces import ModelForces
from .layers import LayerPolarization
from .observables import BlockAverage, Dielectric, data_eps_inf
from .outputs import LOG_FIELDS, SPREAD_COLUMNS, append_layers, append_log, replica_atoms, write_frames  # noqa: F401
from .outputs import progress as _progress, truncate_outputs as _truncate_outputs
from .state import MDState, kinetic_energy, pressure, temperature, volumes, without_centre_of_mass_motion
from .heap import keep_large_allocations_on_the_heap

RESTART_VERSION = 1


def replica_table(cfg: MDConfig):
    """(temperature K, field V/Å (3,)) per replica: temperatures × fields × copies, plus ±E pairs if asked."""
    table = []
    for t in cfg.temperatures:
        for f in cfg.fields:
            table += [(float(t), [float(x) for x in f])] * cfg.copies
        if cfg.dielectric.finite_field:
            amplitudes = [cfg.dielectric.field] + ([cfg.dielectric.field / 2] if cfg.dielectric.linearity_check else [])
            for amplitude in amplitudes:
                for axis in range(3):
                    for sign in (1.0, -1.0):
                        e = [0.0, 0.0, 0.0]
                        e[axis] = sign * amplitude
                        table += [(float(t), e)] * cfg.copies
    return table


def initial_state(atoms_list, temperatures, fields, pressures, species: SpeciesTable, dtype, device,
                  generator: torch.Generator) -> MDState:
    """Replicas at rest positions with Maxwell–Boltzmann momenta at their temperature (centre of mass at rest)."""
    batch = atoms_to_batch(atoms_list, species, dtype, device, loc="MD: ")
    masses = torch.tensor([atomic_masses()[z] for a in atoms_list for z in a.numbers], dtype=dtype, device=device)
    t = torch.as_tensor(temperatures, dtype=dtype, device=device)
    kT = (KB_EV_PER_K * t)[batch[K.BATCH]][:, None]
    momenta = torch.randn(batch[K.POSITIONS].shape, generator=generator, dtype=dtype, device=device)
    momenta = momenta * torch.sqrt(masses[:, None] * kT / AMU_A2_PER_FS2_IN_EV)
    b = len(atoms_list)
    momenta = without_centre_of_mass_motion(momenta, batch[K.BATCH], batch[K.NUM_ATOMS])
    return MDState(
        positions=batch[K.POSITIONS], momenta=momenta, masses=masses, cell=batch[K.CELL], pbc=batch[K.PBC],
        species=batch[K.SPECIES], atomic_numbers=batch[K.ATOMIC_NUMBERS], batch=batch[K.BATCH], ptr=batch[K.PTR],
        num_atoms=batch[K.NUM_ATOMS], temperature_target=t,
        pressure_target=torch.as_tensor(pressures, dtype=dtype, device=device),
        field=torch.as_tensor(fields, dtype=dtype, device=device),
        dipole=torch.zeros((b, 3), dtype=dtype, device=device),
        time=torch.zeros((), dtype=dtype, device=device), step=torch.zeros((), dtype=torch.int64, device=device),
        chain_positions=torch.zeros((b, 3), dtype=dtype, device=device),
        chain_momenta=torch.zeros((b, 3), dtype=dtype, device=device))


def load_inputs(config: MDConfig):
    """(energy model, Born model or None, starting structure(s)) of an MD recipe, each structure checked against the
    models (known elements, no overlapping atoms) with the file and frame named in any error; a list when the
    recipe's ``index`` is a list (one start per replica, cycled)."""
    from ..data.frames import read_structure
    from ..models.loading import load

    energy = load(config.energy, kind="energy")
    born = load(config.born, kind="born") if config.born else None
    check_compatible(energy, born)
    starts = []
    for index in config.index if isinstance(config.index, list) else [config.index]:
        atoms = read_structure(config.structure, index)
        loc = where(config.structure, index)
        SpeciesTable(energy.atomic_numbers).index(torch.as_tensor(atoms.numbers), loc)
        neighbour_list(torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array), atoms.pbc,
                       MIN_INTERATOMIC_DISTANCE, loc=loc)
        starts.append(atoms.repeat(config.supercell))
    return energy, born, starts if isinstance(config.index, list) else starts[0]


class Simulation:
    """Batched replicas + force provider + integrator + accumulators (see the module docstring)."""

    LOG_FIELDS = LOG_FIELDS

    def __init__(self, config: MDConfig, energy_model, born_model, atoms, out: Optional[str] = None,
                 local_field: Optional[LocalFieldFn] = None):
        """``local_field``: an optional field g(positions (N, 3) Å, time 0-d fs) → (N, 3) V/Å at each atom of the
        whole batch, added to the recipe's fields (on the device, every force call)."""
        self.config = cfg = config.validate()
        self.device = resolve_device(cfg.device, "md recipe: device")
        self.dtype = getattr(torch, cfg.dtype)
        if self.device.type == "cpu" and cfg.cpu_heap_allocations:
            keep_large_allocations_on_the_heap()
        if cfg.cueq:
            from ..models.cueq import to_cueq

            energy_model = to_cueq(energy_model.to(device=self.device, dtype=self.dtype))
        if cfg.compile:
            energy_model, born_model = (compile_for_md(m, cfg.compile_backend, self.device, self.dtype)
                                        for m in (energy_model, born_model))
        self.energy_model = energy_model.to(device=self.device, dtype=self.dtype).eval()
        self.born_model = born_model.to(device=self.device, dtype=self.dtype).eval() if born_model else None
        self.out = out if out is not None else cfg.out
        table = replica_table(cfg)
        starts = atoms if isinstance(atoms, (list, tuple)) else [atoms]  # replica b starts from starts[b % len]
        starts = [starts[b % len(starts)] for b in range(len(table))]
        local = None
        if cfg.field_regions or cfg.field_array:
            regions = parse_regions(cfg.field_regions, "md recipe: field_regions")
            local = np.concatenate([local_amplitudes(a, regions, cfg.field_array, f"md recipe: structure '{cfg.structure}'"
                                                     f" (replica {b})", "md recipe: field_regions")
                                    for b, a in enumerate(starts)])
        if (any(any(f) for _, f in table) or local_field is not None or (local is not None and local.any())) \
                and self.born_model is None:
            raise ConfigError("md recipe: a non-zero field needs Born charges; set 'born' to a born.ckpt")
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        species = SpeciesTable(self.energy_model.atomic_numbers)
        temps, fields = [t for t, _ in table], [f for _, f in table]
        pressure = cfg.pressure_gpa / EV_PER_A3_TO_GPA
        self.state = initial_state(starts, temps, fields, [pressure] * len(table), species, self.dtype, self.device,
                                   self.generator)
        if local_field is not None:
            check_local_fn(local_field, self.state.positions, self.state.time, "Simulation local_field")
        self.schedule = schedule = FieldSchedule(
            TimeDependentField(torch.as_tensor(fields, dtype=torch.float64), cfg.field_kind, cfg.field_period_fs or None),
            None if local is None else torch.as_tensor(local, dtype=self.dtype, device=self.device), local_field)
        if schedule.nonuniform:
            self.state = self.state.replace(atom_dipoles=torch.zeros_like(self.state.positions))
        self.forces = ModelForces(self.energy_model, self.born_model, field=schedule, skin=cfg.skin,
                                  check_every=cfg.neighbour_check_every, born_every=cfg.born_every,
                                  compute_stress=True)
        self.step_fn = self._integrator()
        self.momentum_conserved = cfg.ensemble in ("nve", "nvt_nose_hoover", "damped")
        self.state = self.forces(self.state)
        block = cfg.dielectric.block
        # Replicas are classified by their field amplitude, not E(t=0), which is zero for a sine or triangle.
        eps_inf = cfg.dielectric.eps_inf
        eps_inf = data_eps_inf(cfg.structure) if eps_inf == "data" else torch.as_tensor(eps_inf, dtype=torch.float64)
        nonuniform = None  # replicas with a non-uniform field are in neither estimator of ε
        if schedule.nonuniform:
            nonuniform = torch.ones(len(table), dtype=torch.bool) if local_field is not None else torch.zeros(
                len(table), dtype=torch.float64).index_add(0, self.state.batch.cpu(),
                                                           torch.as_tensor(np.abs(local).sum(-1))).gt(0)
        self.dielectric = Dielectric(schedule.amplitude, self.state.temperature_target, eps_inf, block,
                                     constant_field=cfg.field_kind == "constant", nonuniform=nonuniform)
        self.layers = None
        if cfg.polarization_layers:
            self.layers = LayerPolarization(replica_atoms(self.state, 0), AXES[cfg.polarization_layers],
                                            device=self.device, dtype=self.dtype, loc="md recipe: polarization_layers")
        self.averages = {name: BlockAverage(block) for name in ("temperature", "pressure", "cell_lengths", "cell")}
        self.steps_done = 0
        self.wall_s = 0.0
        self._last_good = (0, self.state)  # (step, state) of the last guard check that passed

    @classmethod
    def from_config(cls, config: MDConfig, out: Optional[str] = None,
                    local_field: Optional[LocalFieldFn] = None) -> "Simulation":
        return cls(config, *load_inputs(config), out=out, local_field=local_field)

    def _integrator(self):
        cfg = self.config
        if cfg.ensemble == "nve":
            return functools.partial(integrators.velocity_verlet, dt=cfg.dt_fs)
        if cfg.ensemble == "nvt_langevin":
            return functools.partial(integrators.langevin_baoab, dt=cfg.dt_fs, friction=cfg.friction_per_fs,
                                     generator=self.generator)
        if cfg.ensemble == "nvt_nose_hoover":
            return functools.partial(integrators.nose_hoover_chain, dt=cfg.dt_fs, tau=cfg.tau_t_fs)
        if cfg.ensemble == "damped":
            return functools.partial(integrators.damped, dt=cfg.dt_fs, friction=cfg.friction_per_fs)
        return functools.partial(integrators.npt_langevin_scr, dt=cfg.dt_fs, friction=cfg.friction_per_fs,
                                 tau_p=cfg.tau_p_fs, compressibility=EV_PER_A3_TO_GPA / cfg.bulk_modulus_gpa,
                                 generator=self.generator)

    # --- observables --------------------------------------------------------------------------------------------
    def field_work(self, state: Optional[MDState] = None) -> torch.Tensor:
        """W (B,) in eV: M·E for a uniform field, Σ_i E_i·m_i for a non-uniform one."""
        return -self._field_term(self.state if state is None else state)

    @staticmethod
    def _field_term(s: MDState) -> torch.Tensor:
        if s.atom_field is not None and s.atom_dipoles is not None:
            return local_field_energy(s.atom_dipoles, s.atom_field, s.batch, s.num_replicas).to(torch.float64)
        return field_energy(s.dipole, s.field).to(torch.float64)

    def enthalpy(self, state: Optional[MDState] = None) -> torch.Tensor:
        """H = K + U0 − W (B,) in eV, W = M·E or Σ_i E_i·m_i (plus the Nosé–Hoover chain energy in that ensemble)."""
        s = self.state if state is None else state
        h = kinetic_energy(s).to(torch.float64) + s.energy + self._field_term(s)
        if self.config.ensemble == "nvt_nose_hoover":
            h = h + integrators.nose_hoover_energy(s, self.config.tau_t_fs).to(torch.float64)
        return h

    def _sample(self):
        s = self.state
        omega = volumes(s)
        self.dielectric.add(s.dipole, omega)
        self.averages["temperature"].add(temperature(s, self.momentum_conserved))
        self.averages["pressure"].add(pressure(s) * EV_PER_A3_TO_GPA)
        self.averages["cell_lengths"].add(s.cell.norm(dim=-1))
        self.averages["cell"].add(s.cell)

    # --- the loop -------------------------------------------------------------------------------------------------
    def run(self, steps: Optional[int] = None, progress: bool = True) -> dict:
        """Advance ``steps`` (default: the recipe's steps + equilibration, minus those already done)."""
        cfg = self.config
        total = cfg.steps + cfg.equilibration_steps
        steps = total - self.steps_done if steps is None else steps
        os.makedirs(self.out, exist_ok=True)
        bar = _progress(steps, progress)
        if self.steps_done == 0 and not os.path.exists(os.path.join(self.out, "layers.csv")):
            self._log_layers()  # the profile before anything moved
        start = time.perf_counter()
        for _ in range(steps):
            try:
                self.state = self.step_fn(self.state, self.forces)
            except DataError as exc:  # a neighbour-list build that met overlapping atoms between guard checks
                self._stop(bar, str(exc))
            self.steps_done += 1
            n = self.steps_done
            if cfg.guard_every and n % cfg.guard_every == 0:
                self._guard(bar)
            if n > cfg.equilibration_steps and n % cfg.sample_every == 0:
                self._sample()
            if n % cfg.log_every == 0:
                self._log(bar)
            if cfg.trajectory_every and n % cfg.trajectory_every == 0:
                self._write_frames()
            if cfg.restart_every and n % cfg.restart_every == 0:
                self.save_restart()
            if bar is not None:
                bar.update(1)
        self.wall_s += time.perf_counter() - start
        if bar is not None:
            bar.close()
        self.save_restart()
        summary = self.summary()
        write_json(os.path.join(self.out, "summary.json"), summary)
        return summary

    def _log(self, bar):
        s = self.state
        temp = temperature(s, self.momentum_conserved).cpu()
        omega = volumes(s)
        pol = (s.dipole / omega[:, None] * E_PER_A2_TO_UC_PER_CM2).cpu()
        p_gpa = (pressure(s) * EV_PER_A3_TO_GPA).cpu()
        columns = {"temperature": temp.tolist(), "target": s.temperature_target.cpu().tolist(),
                   "potential": s.energy.cpu().tolist(), "kinetic": kinetic_energy(s).cpu().tolist(),
                   "enthalpy": self.enthalpy().cpu().tolist(), "pressure": p_gpa.tolist(),
                   "volume": omega.cpu().tolist(), "field": s.field.cpu().tolist(), "dipole": s.dipole.cpu().tolist(),
                   "polarization": pol.tolist(), "lengths": s.cell.norm(dim=-1).cpu().tolist(),
                   "work": self.field_work().cpu().tolist()}
        spread = {k: v.cpu().tolist() for k, v in sorted(self.forces.spread.items())}
        append_log(os.path.join(self.out, "log.csv"), self.steps_done, float(s.time), columns, spread)
        self._log_layers()
        if bar is not None:
            post = {"T": f"{float(temp.mean()):.0f}K", "P": f"{float(p_gpa.mean()):.2f}GPa"}
            eps = self._fluctuation_epsilon() or self.dielectric.finite_field()
            if eps is not None:
                post["eps_zz"] = f"{float(eps[0][2, 2]):.0f}"
            bar.set_postfix(post, refresh=False)

    def _log_layers(self):
        s = self.state
        if self.layers is not None and s.born is not None:
            layers = self.layers(s.positions, s.cell, s.born) * E_PER_A2_TO_UC_PER_CM2
            append_layers(os.path.join(self.out, "layers.csv"), self.steps_done, float(s.time),
                          self.layers.layer_positions.tolist(), layers.cpu().tolist())

    def _fluctuation_epsilon(self):
        """(ε, error) from the zero-field dipole fluctuations, or None: not asked for (dielectric.fluctuation) or no
        Born model (M stays zero, and ε would read as ε∞ with no error bar)."""
        if not self.config.dielectric.fluctuation or self.born_model is None:
            return None
        return self.dielectric.fluctuation()

    # --- guard --------------------------------------------------------------------------------------------------
    def unphysical(self, state: Optional[MDState] = None) -> torch.Tensor:
        """(B,) int8 on the device: 0 fine, 1 a non-finite position/momentum/energy/force/dipole, 2 two atoms
        closer than ``min_distance`` Å (the energy model's neighbour list holds every pair within its cutoff)."""
        s = self.state if state is None else state
        b = s.num_replicas
        bad_atom = ~torch.isfinite(torch.cat([s.positions, s.momenta, s.forces], dim=-1)).all(dim=-1)
        bad = torch.zeros(b, dtype=torch.int64, device=bad_atom.device).index_add(0, s.batch, bad_atom.to(torch.int64))
        finite = (bad == 0) & torch.isfinite(s.energy) & torch.isfinite(s.dipole).all(dim=-1)
        edge_index, unit_shifts = self.forces._edges["energy"]
        lengths = pair_lengths(s.positions, s.cell, s.batch, edge_index, unit_shifts)
        close = torch.zeros(b, dtype=torch.int64, device=finite.device).index_add(
            0, s.batch[edge_index[0]], (lengths < self.config.min_distance).to(torch.int64)) > 0
        return torch.where(~finite, 1, torch.where(close, 2, 0)).to(torch.int8)

    def _guard(self, bar=None):
        """Stop on a broken replica (one host read per check), saving every replica's last good frame."""
        code = self.unphysical()
        if not bool(code.any()):
            self._last_good = (self.steps_done, self.state)
            return
        why = {1: "non-finite positions, momenta, energy, forces or dipole (NaN/inf)",
               2: f"two atoms closer than {self.config.min_distance} Å"}
        self._stop(bar, "; ".join(f"replica {b}: {why[c]}" for b, c in enumerate(code.tolist()) if c))

    def _stop(self, bar, problems: str):
        if bar is not None:
            bar.close()
        step, good = self._last_good
        os.makedirs(self.out, exist_ok=True)
        path = os.path.join(self.out, "last_good.extxyz")
        with atomic_path(path) as tmp:
            self._write_frames(good, step, lambda b: tmp)
        raise SimulationError(f"MD stopped at step {self.steps_done}: {problems}. The last good frame of every "
                              f"replica (step {step}) is in '{path}'; lower dt_fs, check the structure, or "
                              f"train the model on such configurations.")

    def _write_frames(self, state: Optional[MDState] = None, step: Optional[int] = None, path_of=None):
        """Append one extxyz frame per replica (to trajectory_r{b}.extxyz unless ``path_of(b)`` says otherwise)."""
        step = self.steps_done if step is None else step
        path_of = path_of or (lambda b: os.path.join(self.out, f"trajectory_r{b}.extxyz"))
        write_frames(self.state if state is None else state, step, path_of)

    # --- results ----------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        cfg, s = self.config, self.state
        out = {"steps": self.steps_done, "replicas": s.num_replicas, "atoms": int(s.num_atoms.sum()),
               "ensemble": cfg.ensemble, "device": str(self.device), "dtype": cfg.dtype,
               "neighbour_rebuilds": self.forces.rebuilds, "dangerous_builds": self.forces.dangerous_builds,
               "wall_s": self.wall_s,
               "atom_steps_per_s": self.steps_done * int(s.num_atoms.sum()) / self.wall_s if self.wall_s else None,
               "temperatures_K": s.temperature_target.cpu().tolist(), "fields_V_per_A": s.field.cpu().tolist(),
               "eps_inf": self.dielectric.eps_inf.tolist()}
        for name, avg in (*self.averages.items(), ("polarization", self.dielectric.polarization)):
            if avg.count:
                out[name] = {"mean": avg.mean().cpu().tolist(), "error": avg.error().cpu().tolist()}
        half = self.dielectric.finite_field(cfg.dielectric.field / 2) if cfg.dielectric.linearity_check else None
        for name, value in (("epsilon_fluctuation", self._fluctuation_epsilon()),
                            ("epsilon_finite_field", self.dielectric.finite_field()),
                            ("epsilon_finite_field_half", half)):
            if value is not None:
                out[name] = {"mean": value[0].cpu().tolist(), "error": value[1].cpu().tolist()}
        return out

    # --- restart --------------------------------------------------------------------------------------------------
    def save_restart(self, path: Optional[str] = None) -> str:
        path = path or os.path.join(self.out, "restart.pt")
        payload = {"version": RESTART_VERSION, "state": self.state.tensors(), "rng": self.generator.get_state(),
                   "steps_done": torch.tensor(self.steps_done), **self.forces.state_dict(),
                   "wall_s": torch.tensor(self.wall_s),
                   "dielectric": self.dielectric.state_dict(),
                   "averages": {k: v.state_dict() for k, v in self.averages.items()}}
        atomic_torch_save(payload, path)
        return path

    def load_restart(self, path: Optional[str] = None) -> None:
        """Continue from a restart file: the same trajectory as an uninterrupted run (same device and dtype)."""
        path = path or os.path.join(self.out, "restart.pt")
        try:
            payload = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"restart '{path}': cannot be read as a ferronn restart file ({exc})") from None
        if payload.get("version") != RESTART_VERSION:
            raise CheckpointError(f"restart '{path}': version {payload.get('version')}, expected {RESTART_VERSION}")
        state = MDState.from_tensors(payload["state"], self.device)
        if state.positions.shape != self.state.positions.shape:
            raise CheckpointError(f"restart '{path}': holds {state.positions.shape[0]} atoms, the recipe makes "
                                  f"{self.state.positions.shape[0]}")
        self.state = state
        self.generator.set_state(payload["rng"].cpu())
        self.steps_done, self.wall_s = int(payload["steps_done"]), float(payload["wall_s"])
        self.forces.load_state_dict({"force_calls": payload["force_calls"], "lists": payload["lists"]})
        self.dielectric.load_state_dict(payload["dielectric"])
        for k, v in payload["averages"].items():
            self.averages[k].load_state_dict(v)
        _truncate_outputs(self.out, self.steps_done)


def compile_for_md(model, backend: str, device, dtype):
    """``torch.compile``d copy of a plain energy/Born model on ``device`` in ``dtype`` (None passes through)."""
    if model is None:
        return None
    from ..models.protocol import is_rebuildable

    if not is_rebuildable(model):
        raise ConfigError(f"md recipe: 'compile' works on ferronn checkpoints, not on a {type(model).__name__} "
                          "(committee or exported model)")
    from ..models.compile import compiled

    return compiled(model.to(device=device, dtype=dtype), backend=backend)
