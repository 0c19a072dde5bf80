"""The LAMMPS plugin (lammps/, docs/lammps.md) against ferronn.md's engine: same models, same start.

Fast tier: the TorchScript model files reproduce the periodic models from an open cluster of image atoms (the
plugin's ghost-atom picture: local energies summed, ghost forces folded back onto their owners, Z* minus the
global mean). Slow tier (subprocesses of lmp, 1 and 2 MPI ranks): float64 NVE with a constant and a sine field
matches the engine in positions, M, U0, K, H and the pressure tensor; a restart in the middle continues the run;
a rank that owns no atoms works; bad input gives one ERROR line. Physics on the 135-atom cell (10 steps) keeps
CI inside its budget; the issue's 1080-atom comparison runs too, on 1 and 2 ranks (STEPS_1080 below).
"""

from __future__ import annotations

import functools
import os
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import ALLEGRO, ROOT, require_shared

from ferronn import lammps as L

ENERGY_CKPT = ROOT / "checkpoints" / "batio3-allegro-pol" / "energy.ckpt"
BORN_CKPT = ROOT / "checkpoints" / "batio3-allegro-pol" / "born.ckpt"
FIELD = 0.02  # V/Å along z
PERIOD_FS = 30.0  # fs: E(10 fs) = 0.87 E0, far from a node
STEPS = 10  # 135-atom runs (1 fs steps)
# The 1080-atom comparison runs 50 steps (passed at 50 on 1 and 2 ranks when this was written: ~16 min on
# two loaded cores); CI runs 20 of them to stay inside its 12-minute budget. FERRONN_LAMMPS_STEPS_1080=50 for all.
STEPS_1080 = int(os.environ.get("FERRONN_LAMMPS_STEPS_1080", "20"))
LAMMPS_FIELDS = {"constant": f"constant 0 0 {FIELD}", "sine": f"sine 0 0 {FIELD} {PERIOD_FS / 1000}",
                 "variable": "variable v_zero v_zero v_ez"}
# The sine as LAMMPS equal-style variables of the simulation time (ps): the engine runs the same sine.
VARIABLES = f"variable zero equal 0.0\nvariable ez equal {FIELD}*sin(2*PI*time/{PERIOD_FS / 1000})"


def require_plugin():
    if L.executables() is None:
        pytest.skip("lmp/mpiexec not installed: pip install lammps mpich (.ci/run does)")
    if L.plugin_path() is None:
        pytest.skip(f"LAMMPS plugin not built at {L.PLUGIN}: run bash lammps/build.sh (.ci/run does)")


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """float64 energy + Born and a float32 energy model file, exported once per session."""
    from ferronn.models.lammps import export_lammps

    folder = tmp_path_factory.mktemp("lammps_models")
    return {"energy": export_lammps(str(ENERGY_CKPT), str(folder / "energy.lammps.pt")),
            "born": export_lammps(str(BORN_CKPT), str(folder / "born.lammps.pt")),
            "energy32": export_lammps(str(ENERGY_CKPT), str(folder / "energy32.lammps.pt"), dtype="float32")}


# ---- fast: the model files in the ghost-atom picture ------------------------------------------------------------
def test_model_files_reproduce_periodic_models_from_ghost_images(models):
    import ase.io

    from ferronn.data.graph import SpeciesTable, neighbour_list
    from ferronn.data.verlet import atoms_batch
    from ferronn.models.checkpoint import load_checkpoint as load

    atoms = ase.io.read(require_shared(), 0)
    energy_model, born_model = load(ENERGY_CKPT).eval(), load(BORN_CKPT).eval()
    batch = atoms_batch([atoms], SpeciesTable(energy_model.atomic_numbers), 5.0, torch.float64, torch.device("cpu"))
    reference = energy_model(batch, compute_forces=True)
    with torch.no_grad():
        born_reference = born_model(atoms_batch([atoms], SpeciesTable(born_model.atomic_numbers), born_model.r_max,
                                                torch.float64, torch.device("cpu")))["born_charges"]
    # Local atoms plus every image within 2 r_max (two message-passing layers) of the cell: the ghosts.
    lengths, reach = np.diag(atoms.cell.array), 2 * 5.0
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    shifts = shifts[np.argsort(np.abs(shifts).sum(1), kind="stable")]  # (0,0,0) first: local atoms are nodes 0..N-1
    images = atoms.positions[None] + (shifts * lengths)[:, None]
    owner = np.tile(np.arange(len(atoms)), len(shifts))
    images = images.reshape(-1, 3)
    keep = np.all((images > -reach) & (images < lengths + reach), axis=1)
    positions = torch.tensor(images[keep], requires_grad=True)
    owner = torch.as_tensor(owner[keep])
    species = batch["species"][owner]
    n = len(atoms)
    assert len(positions) > 10 * n  # the ghost shell dominates a cell this small

    module = torch.jit.load(models["energy"])
    edges, _ = neighbour_list(positions.detach(), torch.zeros(3, 3, dtype=torch.float64), [False] * 3, 5.0)
    node_energy = module(positions, species, edges, torch.zeros(edges.shape[1], 3, dtype=torch.float64),
                         torch.tensor(n))
    assert node_energy.shape == (n,)  # the local atoms' energies only (receivers pruned)
    local = node_energy.sum()
    forces = -torch.autograd.grad(local, positions)[0]
    folded = torch.zeros(n, 3, dtype=torch.float64).index_add_(0, owner, forces)  # reverse communication
    assert abs(float(local.detach()) - float(reference["energy"][0].detach())) / n < 1e-10
    assert float((folded - reference["forces"]).abs().max()) < 1e-9
    # Ghost forces are real: dropping them (no reverse communication) would be wrong by whole eV/Å.
    assert float((forces[:n] - reference["forces"]).abs().max()) > 1e-2

    born = torch.jit.load(models["born"])
    edges_b, _ = neighbour_list(positions.detach(), torch.zeros(3, 3, dtype=torch.float64), [False] * 3,
                                born_model.r_max)
    with torch.no_grad():
        raw = born(positions.detach(), species, edges_b, torch.zeros(edges_b.shape[1], 3, dtype=torch.float64),
                   torch.tensor(n))
    assert float((raw - raw.mean(0) - born_reference).abs().max()) < 1e-9  # the sum rule, applied globally
    assert float(raw.sum(0).abs().max()) > 1e-3  # the file really hands the rule to the plugin


def test_model_files_on_the_periodic_graph_give_forces_and_virial(models):
    """One rank of a periodic box: local atoms only, ghosts as edge shifts; virial Σ r⊗F − Σ s⊗∂U/∂s."""
    import ase.io

    from ferronn.data.graph import SpeciesTable
    from ferronn.data.verlet import atoms_batch
    from ferronn.models.checkpoint import load_checkpoint as load
    from ferronn.models.lammps import graph_inputs

    atoms = ase.io.read(require_shared(), 0)
    energy_model = load(ENERGY_CKPT).eval()
    batch = atoms_batch([atoms], SpeciesTable(energy_model.atomic_numbers), 5.0, torch.float64, torch.device("cpu"))
    reference = energy_model(batch, compute_forces=True, compute_stress=True)
    positions, species, edges, shifts = graph_inputs(energy_model, atoms, torch.float64)
    positions.requires_grad_(True), shifts.requires_grad_(True)
    energy = torch.jit.load(models["energy"])(positions, species, edges, shifts, torch.tensor(len(atoms))).sum()
    grad_r, grad_s = torch.autograd.grad(energy, (positions, shifts))
    assert abs(float(energy.detach()) - float(reference["energy"][0])) < 1e-9
    assert float((-grad_r - reference["forces"]).abs().max()) < 1e-10
    virial = positions.detach().T @ -grad_r - shifts.detach().T @ grad_s  # W = -Ω σ (ASE sign)
    stress = -virial / atoms.get_volume()
    assert float((stress - reference["stress"][0]).abs().max()) < 1e-10
    assert float(reference["stress"][0].abs().max()) > 1e-3


def test_pruned_receivers_give_the_local_atoms_exactly():
    """Nodes 0..nlocal-1 local (a ghost graph): the pruned layers give the full evaluation's local energies, forces
    on every atom and local Z*, on fewer edges; without nlocal the loop is mace's ScaleShiftMACE to the bit."""
    from ferronn import keys as K
    from ferronn.models import receivers
    from ferronn.models.checkpoint import load_checkpoint as load
    from ferronn.models.lammps import _cluster, _one_structure, graph_inputs

    energy_model, born_model = load(ENERGY_CKPT).eval(), load(BORN_CKPT).eval()
    atoms = _cluster(energy_model, 6, 4)  # 216 atoms, 12 Å across: much of it beyond 2 r_max of the corner
    nlocal = 20
    positions, species, edges, shifts = graph_inputs(energy_model, atoms, torch.float64)
    runs = []
    for n in (None, torch.tensor(nlocal)):
        x = positions.clone().requires_grad_(True)
        energy = energy_model.energy(_one_structure(x, species, edges, shifts), n)[K.NODE_ENERGY][:nlocal]
        runs.append((energy.detach(), torch.autograd.grad(energy.sum(), x)[0]))
    (e_full, f_full), (e_pruned, f_pruned) = runs
    assert e_pruned.shape == (nlocal,)
    assert float((e_pruned - e_full).abs().max()) < 1e-10
    assert float((f_pruned - f_full).abs().max()) < 1e-10
    assert float(f_full[nlocal:].abs().max()) > 1e-2  # the ghosts' forces are real and pruning keeps them
    plan = receivers.plan(edges, len(positions), torch.tensor(nlocal), 2)
    evaluated = [len(layer.edges) for layer in plan.layers]
    assert evaluated[1] < evaluated[0] < edges.shape[1] / 2, (evaluated, edges.shape[1])

    pb, sb, eb, shb = graph_inputs(born_model, atoms, torch.float64)
    with torch.no_grad():
        z_full = born_model.unconstrained(_one_structure(pb, sb, eb, shb))[:nlocal]
        z_pruned = born_model.unconstrained(_one_structure(pb, sb, eb, shb), torch.tensor(nlocal))
    assert z_pruned.shape == (nlocal, 3, 3) and float((z_pruned - z_full).abs().max()) < 1e-10

    batch = _one_structure(positions, species, edges, shifts)  # the unpruned loop against mace's own forward
    data = {"positions": positions, "node_attrs": torch.nn.functional.one_hot(species, 3).to(torch.float64),
            "edge_index": edges, "shifts": shifts, "unit_shifts": shifts, "cell": batch[K.CELL],
            "batch": batch[K.BATCH], "ptr": batch[K.PTR]}
    stock = energy_model.mace(data, compute_force=False)["node_energy"] + energy_model._e0(positions.device)[species]
    assert torch.equal(energy_model.energy(batch)[K.NODE_ENERGY], stock)


# ---- slow: lmp against the engine ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def engine_run(supercell: int, steps: int, kind: str):
    """(start, end) of ferronn.md's NVE run with the shipped models: positions, velocities, M, U0, K, H, P
    (once per session for each cell, length and field)."""
    import tempfile

    from ferronn.md.config import MDConfig
    from ferronn.md.engine import Simulation
    from ferronn.md.state import kinetic_energy, pressure_tensor

    cfg = MDConfig(energy=str(ENERGY_CKPT), born=str(BORN_CKPT), structure=str(ALLEGRO), ensemble="nve",
                   temperatures=[300.0], fields=[[0.0, 0.0, FIELD]], field_kind=kind,
                   field_period_fs=PERIOD_FS if kind == "sine" else 0.0, supercell=[supercell] * 3, steps=steps,
                   equilibration_steps=0, log_every=10 ** 6, trajectory_every=0, restart_every=0, guard_every=0,
                   device="cpu", dtype="float64", seed=1, out=tempfile.mkdtemp(prefix="ferronn_engine_"))
    sim = Simulation.from_config(cfg)
    s = sim.state
    start = {"positions": s.positions.numpy().copy(), "cell": s.cell[0].numpy(),
             "numbers": s.atomic_numbers.numpy(), "velocities": (s.momenta / s.masses[:, None]).numpy()}
    sim.run(steps, progress=False)
    shutil.rmtree(cfg.out, ignore_errors=True)
    s = sim.state
    end = {"positions": s.positions.numpy(), "dipole": s.dipole[0].numpy(), "u": float(s.energy[0]),
           "k": float(kinetic_energy(s)[0]), "h": float(sim.enthalpy()[0]),
           "pressure": pressure_tensor(s)[0].numpy()}
    return start, end


def lammps_run(folder, start, models, steps, kind="constant", ranks=1, energy="energy", pre="", extra="",
               origin=(0.0, 0.0, 0.0), restart_out=None, restart_in=None, name="in.ferronn", pair_args=""):
    os.makedirs(folder, exist_ok=True)
    elements = L.write_data(os.path.join(folder, "data.lmp"), start["positions"], start["cell"], start["numbers"],
                            start["velocities"], origin=origin)
    pre = pre + ("\n" + VARIABLES if kind == "variable" else "")
    script = L.input_script("data.lmp", models[energy], elements, steps, born=models["born"],
                            field=LAMMPS_FIELDS[kind], pre=pre, extra=extra, dump=name + ".dump",
                            restart_out=restart_out, restart_in=restart_in, pair_args=pair_args)
    done = L.run_lammps(script, folder, ranks=ranks, name=name, timeout=900)
    log = open(os.path.join(folder, name + ".log")).read()
    assert done.returncode == 0, log[-3000:] + done.stderr[-2000:]
    return L.parse_result(log), L.read_dump(os.path.join(folder, name + ".dump")), log


def assert_matches(result, positions, end, atoms):
    assert np.abs(positions - end["positions"]).max() < 1e-6  # Å
    dipole = np.array([result["mx"], result["my"], result["mz"]])
    assert np.abs(dipole - end["dipole"]).max() < 1e-6  # e·Å
    assert np.abs(end["dipole"]).max() > 0.1  # the field moved charge: M is not trivially zero
    for key in ("u", "k", "h"):
        assert abs(result[key] - end[key]) / atoms < 1e-8, (key, result[key], end[key])
    pressure = np.array([[result["pxx"], result["pxy"], result["pxz"]], [result["pxy"], result["pyy"], result["pyz"]],
                         [result["pxz"], result["pyz"], result["pzz"]]]) / L.BAR_PER_EV_A3
    # The virial by autograd over local + ghost atoms against the engine's strain-derivative stress; LAMMPS'
    # metal bar-per-eV/Å³ constant (1.6021765e6) is 8e-8 relative off CODATA's, 1e-9 eV/Å³ on these 0.01 eV/Å³.
    assert np.abs(pressure - end["pressure"]).max() < 1e-8, (pressure, end["pressure"])
    assert np.abs(end["pressure"]).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("kind,ranks,graph", [("constant", 1, "auto"), ("sine", 2, "auto"), ("variable", 1, "auto"),
                                              ("sine", 2, "ghost")])
def test_nve_with_field_matches_engine(models, tmp_path, kind, ranks, graph):
    require_shared(), require_plugin()
    start, end = engine_run(1, STEPS, "constant" if kind == "constant" else "sine")
    result, positions, log = lammps_run(str(tmp_path / "lmp"), start, models, STEPS, kind, ranks,
                                        pair_args=f"graph {graph}")
    assert_matches(result, positions, end, len(positions))
    # Folded, 2 ranks of 135 atoms: every ghost image of a rank's own atoms is one node with them, so the
    # graph has fewer nodes than one per image (graph ghost) but more than the local atoms (other rank's atoms).
    nodes, local = map(int, re.search(r"graph on rank 0: (\d+) nodes \((\d+) local\)", log).groups())
    assert (nodes == local) == (ranks == 1), (nodes, local)
    assert f"{'folded' if graph == 'auto' else 'unfolded'} graph" in log
    # torch's float64 products use torch's BLAS, not liblammps' bundled reference dgemm_ (the loader's
    # RTLD_DEEPBIND; linked into the process' global scope they took the reference one, 1.3x slower per step).
    assert "dgemm_ from libtorch_cpu" in log, re.findall(r"pair ferronn: .*", log)
    expected = FIELD if kind == "constant" else FIELD * np.sin(2 * np.pi * STEPS / PERIOD_FS)
    assert abs(result["ez"] - expected) < 1e-12


@pytest.mark.slow
def test_restart_in_the_middle_continues_the_run(models, tmp_path):
    require_shared(), require_plugin()
    start, end = engine_run(1, STEPS, "constant")
    folder = str(tmp_path / "lmp")
    half = STEPS // 2
    first, _, _ = lammps_run(folder, start, models, half, restart_out="half.restart", ranks=2, name="first")
    second, positions, _ = lammps_run(folder, start, models, STEPS - half, restart_in="half.restart", name="second")
    assert first["mx"] != second["mx"]  # the second half moved M on from where the file left it
    assert_matches(second, positions, end, len(positions))


@pytest.mark.slow
def test_sorting_and_migration_every_step_keep_the_run(models, tmp_path):
    """Z*(t-dt) and r(t-dt) live on the model's device between reneighbourings; LAMMPS reorders and migrates the
    per-atom copies. Sorting atoms every step, reneighbouring every step and moving the rank boundary every step
    (fix balance) must leave the run the engine's."""
    require_shared(), require_plugin()
    start, end = engine_run(1, STEPS, "sine")
    extra = "atom_modify sort 1 1.0\nneigh_modify every 1 delay 0 check no\nfix bal all balance 1 1.0 shift z 5 1.0"
    result, positions, log = lammps_run(str(tmp_path / "lmp"), start, models, STEPS, "sine", ranks=2, extra=extra)
    assert_matches(result, positions, end, len(positions))
    assert re.search(r"Neighbor list builds = %d\b" % STEPS, log), re.findall(r"Neighbor list builds.*", log)


@pytest.mark.slow
def test_a_rank_that_owns_no_atoms(models, tmp_path):
    require_shared(), require_plugin()
    start, end = engine_run(1, STEPS, "constant")
    # Put the box's lower z face inside the widest gap between atomic layers, then give rank 0 a slab of it.
    z = np.sort(np.mod(start["positions"][:, 2], start["cell"][2, 2]))
    gaps = np.diff(np.concatenate([z, [z[0] + start["cell"][2, 2]]]))
    widest = int(np.argmax(gaps))
    assert gaps[widest] > 0.8
    origin = (0.0, 0.0, float(z[widest] + gaps[widest] / 2 - 0.15))  # the slab sits mid-gap
    slab = float(0.3 / start["cell"][2, 2])
    result, positions, log = lammps_run(str(tmp_path / "lmp"), start, models, STEPS, ranks=2, origin=origin,
                                        pre="processors 1 1 2", extra=f"balance 1.0 z {slab!r}")
    # One rank holds all 135 atoms after the balance (LAMMPS: "initial/final maximal load/proc = 68 135").
    assert re.search(r"initial/final maximal load/proc = \d+ 135\b", log), log[-2000:]
    assert_matches(result, positions, end, len(positions))


@pytest.mark.slow
def test_float32_energy_model_agrees_with_float64(models, tmp_path):
    require_shared(), require_plugin()
    start, end = engine_run(1, STEPS, "constant")
    r32, x32, _ = lammps_run(str(tmp_path / "f32"), start, models, STEPS, energy="energy32")
    n = len(x32)
    assert abs(r32["u"] - end["u"]) / n < 1e-5 and abs(r32["h"] - end["h"]) / n < 1e-5  # eV/atom
    assert np.abs(x32 - end["positions"]).max() < 1e-4  # Å
    assert np.abs(x32 - end["positions"]).max() > 1e-10  # really another precision than the float64 engine


@pytest.mark.slow
def test_1080_atoms_on_1_and_2_ranks_match_engine(models, tmp_path):
    require_shared(), require_plugin()
    start, end = engine_run(2, STEPS_1080, "constant")
    for ranks in (1, 2):
        result, positions, _ = lammps_run(str(tmp_path / f"np{ranks}"), start, models, STEPS_1080, ranks=ranks)
        assert len(positions) == 1080
        assert_matches(result, positions, end, 1080)


# ---- slow: bad input -------------------------------------------------------------------------------------------
BAD = {
    "unknown element": ({"elements": "Ba O Sr"}, r"element Sr is not in model"),
    "model of the other kind": ({"energy": "born"}, r"holds a 'born' model; expected a 'energy' model"),
    "wrong field shape": ({"field": "constant 0 0.01"}, r"constant field takes 3 numbers Ex Ey Ez .* got 2 value"),
    "field without a Born model": ({"born": None}, r"field forces need Born charges"),
    "missing model file": ({"energy": "missing"}, r"model file '.*missing.lammps.pt' does not exist"),
    "not a model file": ({"energy": "data"}, r"is not a ferronn LAMMPS model file"),
    "model file of a newer format": ({"energy": "future"}, r"model file format '99'; this plugin reads formats 1 to"),
}


def rewritten(path: str, out: str, format_row) -> str:
    """The model file ``path`` saved as ``out`` with its ``format`` row set to ``format_row`` (None: no row, as
    files written before receiver pruning), and for format 1 behind the old inputs (no nlocal, every node out)."""
    from ferronn.models.lammps import METADATA

    files = {METADATA: ""}
    module = torch.jit.load(path, _extra_files=files)
    rows = [line for line in files[METADATA].decode().splitlines() if not line.startswith("format ")]
    if format_row is None:
        module = torch.jit.script(FormatOne(module))
    else:
        rows.insert(1, f"format {format_row}")
    torch.jit.save(module, out, _extra_files={METADATA: "".join(row + "\n" for row in rows)})
    return out


class FormatOne(torch.nn.Module):
    """A format-1 module: (positions, species, edge_index, shifts) → outputs of every node, unpruned."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                shifts: torch.Tensor) -> torch.Tensor:
        return self.module(positions, species, edge_index, shifts, torch.tensor(positions.shape[0]))


@pytest.mark.slow
def test_model_files_of_format_1_still_run_unpruned(models, tmp_path):
    require_shared(), require_plugin()
    start, end = engine_run(1, STEPS, "constant")
    old = {kind: rewritten(models[kind], str(tmp_path / f"{kind}1.lammps.pt"), None) for kind in ("energy", "born")}
    result, positions, log = lammps_run(str(tmp_path / "lmp"), start, {**models, **old}, STEPS, ranks=2)
    assert "model file format 1 (receivers not pruned" in log
    assert_matches(result, positions, end, len(positions))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_error_line(models, tmp_path, case):
    require_shared(), require_plugin()
    change, expected = BAD[case]
    import ase.io

    atoms = ase.io.read(require_shared(), 0)
    elements = L.write_data(str(tmp_path / "data.lmp"), atoms.positions, atoms.cell.array, atoms.numbers)
    paths = {**models, "missing": str(tmp_path / "missing.lammps.pt"), "data": str(tmp_path / "data.lmp"),
             "future": rewritten(models["energy"], str(tmp_path / "future.lammps.pt"), 99)}
    elements = change.get("elements", " ".join(elements)).split()
    born = paths["born"] if change.get("born", "born") else ""
    script = L.input_script("data.lmp", paths[change.get("energy", "energy")], elements, 0, born=born or None,
                            field=change.get("field", f"constant 0 0 {FIELD}"))
    if not born:  # the fix asked for with a field and no Born file
        script = script.replace("fix nve all nve", f"fix nve all nve\nfix field all ferronn/field constant 0 0 {FIELD}")
    ranks = 2 if case == "unknown element" else 1  # under MPI too: an error, never a hang
    done = L.run_lammps(script, str(tmp_path), ranks=ranks, timeout=120)
    output = done.stdout + done.stderr + open(tmp_path / "in.ferronn.screen").read()
    errors = sorted({line for line in output.splitlines() if line.startswith("ERROR")})
    assert done.returncode != 0
    assert len(errors) == 1, output[-2000:]
    assert re.search(expected, errors[0]), errors[0]
