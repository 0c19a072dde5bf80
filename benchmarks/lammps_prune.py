"""Per-rank model time of the LAMMPS model files: receiver pruning, and folded against unfolded graphs (issue 30).

The graph is the one rank 0 of a 2-rank run builds (lammps/src/ferronn_model.cpp, build_graph): the BaTiO3
frame 0 repeated n×n×n, the box cut in half across its longest edge (z here: LAMMPS' "1 by 1 by 2" grid, the
smallest cut), local atoms of the lower half, nodes in breadth-first hop order from the local atoms and edges
into nodes of hop ≤ L-1. ``--graph folded`` (pair_style ferronn's default, graph auto): one node per atom, so
only atoms of the other half within L hops are ghost nodes and edges carry periodic shifts. ``--graph
unfolded`` (graph ghost): one node per ghost image out to L·r_max + skin, the x and y images of the rank's own
atoms included. The same model file runs each graph twice: with nlocal = the local atoms (pruned: what the
plugin passes) and with nlocal = N (every node treated as needed: the work the unpruned format-1 files did).
Energy: forward + forces (backward); Born: forward under no_grad, as in the plugin. The whole cell on one rank
(the periodic graph) is timed too: its time over rank 0's is the most 2 ranks on 2 free cores can gain over 1
rank on one (model time only). Median of ``--repeats`` after one warm-up; run it pinned to one core (``taskset
-c 1 env OMP_NUM_THREADS=1``). Last line: one JSON object.

    python benchmarks/lammps_prune.py [--supercell 4] [--repeats 3] [--graph folded|unfolded] [--node-pruning]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]
from timing import STRUCTURE  # noqa: E402  (benchmarks/timing.py, beside this script)

CKPT = os.path.join(ROOT, "checkpoints", "batio3-allegro-pol")
SKIN = 1.0  # Å, ferronn.lammps.input_script's "neighbor 1.0 bin"


def hop_graph(senders, receivers, local, num: int, layers: int):
    """Breadth-first search from the ``local`` nodes over the edges, as build_graph: (nodes in hop order, the mask
    of edges into nodes of hop <= layers-1, those edges renumbered into the node order)."""
    by_receiver = np.argsort(receivers, kind="stable")
    start = np.searchsorted(receivers[by_receiver], np.arange(num + 1))
    hop = np.full(num, -1)
    hop[local] = 0
    nodes, frontier = list(local), np.asarray(local)
    for h in range(1, layers + 1):  # hop h in order of discovery
        found = []
        for i in frontier:
            for j in senders[by_receiver[start[i]:start[i + 1]]]:
                if hop[j] < 0:
                    hop[j] = h
                    found.append(j)
        nodes += found
        frontier = np.array(found, dtype=np.int64)
    nodes = np.array(nodes)
    index = np.full(num, -1)
    index[nodes] = np.arange(len(nodes))
    into = (hop[receivers] >= 0) & (hop[receivers] <= layers - 1)
    return nodes, into, torch.as_tensor(np.stack([index[senders[into]], index[receivers[into]]]))


def folded_rank_graph(atoms, r_max: float, layers: int):
    """(positions, species numbers, edge_index, shifts, nlocal) of rank 0's folded graph (``graph auto``): one
    node per atom, the local atoms (lower half) first, then the atoms of the other half within ``layers`` hops in
    breadth-first order; edges into nodes of hop <= layers-1 with Cartesian shifts. Edge vectors are those of the
    plugin's graph (which puts a folded node at its first-reached image; the model sees only edge vectors)."""
    from ferronn.data.graph import neighbour_list

    lengths = np.diag(atoms.cell.array)
    positions = np.mod(atoms.positions / lengths, 1.0) * lengths
    cell = torch.as_tensor(atoms.cell.array)
    edges, unit_shifts = neighbour_list(torch.as_tensor(positions), cell, [True] * 3, r_max)
    senders, receivers = edges[0].numpy(), edges[1].numpy()
    axis = int(np.argmax(lengths))
    local = positions[:, axis] < lengths[axis] / 2
    nlocal = int(local.sum())
    nodes, into, edge_index = hop_graph(senders, receivers, np.nonzero(local)[0], len(positions), layers)
    shifts = unit_shifts[into].to(torch.float64) @ cell
    return torch.as_tensor(positions[nodes]), atoms.numbers[nodes], edge_index, shifts, nlocal


def rank_graph(atoms, r_max: float, layers: int, folded: bool = False):
    """(positions, species numbers, edge_index, shifts, nlocal) of rank 0's graph: unfolded (``graph ghost``, one
    node per ghost image, shifts zero; see the module docstring) or folded."""
    if folded:
        return folded_rank_graph(atoms, r_max, layers)
    from ferronn.data.graph import neighbour_list

    lengths = np.diag(atoms.cell.array)
    frac = np.mod(atoms.positions / lengths, 1.0)
    positions = frac * lengths
    reach = layers * r_max + SKIN
    shifts = np.array([[i, j, k] for i in (0, -1, 1) for j in (0, -1, 1) for k in (0, -1, 1)])
    images = (positions[None] + (shifts * lengths)[:, None]).reshape(-1, 3)
    numbers = np.tile(atoms.numbers, len(shifts))
    axis = int(np.argmax(lengths))
    local = (np.arange(len(images)) < len(positions)) & (images[:, axis] < lengths[axis] / 2)
    upper = lengths + reach
    upper[axis] = lengths[axis] / 2 + reach
    lower = np.full(3, -reach)
    keep = np.all((images >= lower) & (images < upper), axis=1) | local
    order = np.concatenate([np.nonzero(local)[0], np.nonzero(keep & ~local)[0]])
    images, numbers, nlocal = images[order], numbers[order], int(local.sum())
    edges, _ = neighbour_list(torch.as_tensor(images), torch.zeros(3, 3, dtype=torch.float64), [False] * 3, r_max)
    senders, receivers = edges[0].numpy(), edges[1].numpy()
    nodes, _, edge_index = hop_graph(senders, receivers, np.arange(nlocal), len(images), layers)
    return (torch.as_tensor(images[nodes]), numbers[nodes], edge_index,
            torch.zeros(edge_index.shape[1], 3, dtype=torch.float64), nlocal)


def model_species(numbers, atomic_numbers) -> torch.Tensor:
    """Model species indices (N,) of atomic ``numbers`` for a model of ``atomic_numbers``."""
    from ferronn.data.graph import SpeciesTable

    return SpeciesTable(list(atomic_numbers)).index(torch.as_tensor(numbers), "lammps_prune")


def edges_only(prune, edge_index, num_nodes: int, nlocal: int):
    """``prune`` with every layer on all node rows: edges pruned, node updates (products) on every node."""
    from ferronn.models import receivers

    used = edge_index.index_select(1, prune.used_edges)
    rows, local = torch.arange(num_nodes), torch.arange(nlocal)
    layers = [receivers.Layer(layer.edges, used.index_select(1, layer.edges), rows, local) for layer in prune.layers]
    return receivers.Plan(prune.used_edges, prune.local_nodes, layers)


def node_pruning(atoms, repeats: int, folded: bool) -> dict:
    """Eager energy + forces of rank 0's graph: unpruned, edges pruned only, edges and node updates pruned."""
    from ferronn.models import receivers
    from ferronn.models.checkpoint import load_checkpoint as load

    model = load(os.path.join(CKPT, "energy.ckpt")).eval()
    positions, numbers, edges, shifts, nlocal = rank_graph(atoms, model.r_max, model.config.num_interactions, folded)
    species = model_species(numbers, model.atomic_numbers)
    attrs = torch.nn.functional.one_hot(species, len(model.atomic_numbers)).to(torch.float64)
    full = receivers.plan(edges, len(positions), torch.tensor(nlocal), model.config.num_interactions)
    plans = {"unpruned": None, "edges_only": edges_only(full, edges, len(positions), nlocal), "edges_and_nodes": full}
    out = {}
    for name, prune in plans.items():
        def run():
            x = positions.clone().requires_grad_(True)
            e = model._node_energy(x, attrs, edges, shifts, prune)[:nlocal].sum()
            return torch.autograd.grad(e, x)[0]
        out[f"eager_energy_{name}_s"] = round(timed(run, repeats), 4)
        print(f"eager energy + forces, {name}: {out[f'eager_energy_{name}_s']:.3f} s", flush=True)
    return out


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supercell", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--graph", default="folded", choices=["folded", "unfolded"],
                        help="rank 0's graph as pair_style ferronn graph auto (folded, the default) or graph ghost")
    parser.add_argument("--node-pruning", action="store_true",
                        help="also time the eager energy model with edges pruned but node updates on every node")
    args = parser.parse_args(argv)
    import ase.io

    from ferronn.models.checkpoint import load_checkpoint
    from ferronn.models.lammps import export_lammps, graph_inputs, read_metadata

    from ferronn.md.heap import keep_large_allocations_on_the_heap

    keep_large_allocations_on_the_heap()  # as the engine and pair_style ferronn (heap yes) do
    torch.set_num_threads(1)
    torch._C._set_graph_executor_optimize(False)  # as the plugin (ferronn_model.cpp: the plain interpreter)
    atoms = ase.io.read(STRUCTURE, 0).repeat((args.supercell,) * 3)
    folder = tempfile.mkdtemp(prefix="lammps_prune_")
    out = {"atoms": len(atoms), "ranks": 2, "threads": 1, "repeats": args.repeats, "dtype": "float64",
           "graph": args.graph}
    model_of = {kind: load_checkpoint(os.path.join(CKPT, f"{kind}.ckpt")) for kind in ("energy", "born")}
    for kind in ("energy", "born"):
        path = export_lammps(os.path.join(CKPT, f"{kind}.ckpt"), os.path.join(folder, f"{kind}.lammps.pt"))
        module = torch.jit.load(path)
        meta = read_metadata(path)
        positions, numbers, edges, shifts, nlocal = rank_graph(atoms, float(meta["r_max"]),
                                                               int(meta["num_interactions"]), args.graph == "folded")
        species = model_species(numbers, [int(z) for z in meta["atomic_numbers"].split()])

        def run(n):
            x = positions.clone().requires_grad_(kind == "energy")
            if kind == "born":
                with torch.no_grad():
                    return module(x, species, edges, shifts, torch.tensor(n))
            e = module(x, species, edges, shifts, torch.tensor(n))
            return torch.autograd.grad(e[:nlocal].sum(), x)[0]

        full, pruned = timed(lambda: run(len(positions)), args.repeats), timed(lambda: run(nlocal), args.repeats)
        # The whole cell on one rank (periodic graph, every node local): what 2 ranks on 2 free cores divide.
        cell_inputs = graph_inputs(model_of[kind], atoms, torch.float64)

        def run_cell():
            x = cell_inputs[0].clone().requires_grad_(kind == "energy")
            with torch.set_grad_enabled(kind == "energy"):
                e = module(x, *cell_inputs[1:], torch.tensor(len(x)))
            return torch.autograd.grad(e.sum(), x)[0] if kind == "energy" else e

        one_rank = timed(run_cell, args.repeats)
        print(f"{kind}: whole cell on one rank ({len(atoms)} nodes, {cell_inputs[2].shape[1]} edges) {one_rank:.3f} s",
              flush=True)
        out[f"{kind}_one_rank_cell_s"] = round(one_rank, 4)
        print(f"{kind}: {len(positions)} nodes ({nlocal} local), {edges.shape[1]} edges: unpruned {full:.3f} s, "
              f"pruned {pruned:.3f} s ({full / pruned:.2f}x)", flush=True)
        out.update({f"{kind}_nodes": len(positions), f"{kind}_nlocal": nlocal, f"{kind}_edges": int(edges.shape[1]),
                    f"{kind}_unpruned_s": round(full, 4), f"{kind}_pruned_s": round(pruned, 4),
                    f"{kind}_pruned_speedup": round(full / pruned, 3)})
    if args.node_pruning:
        out.update(node_pruning(atoms, args.repeats, args.graph == "folded"))
    step = {name: out[f"energy_{name}"] + out[f"born_{name}"] for name in ("unpruned_s", "pruned_s", "one_rank_cell_s")}
    out["step_pruned_speedup"] = round(step["unpruned_s"] / step["pruned_s"], 3)
    # One core per rank, nothing else running: the most 2 ranks can gain over 1 rank on one core, model time only.
    out["two_ranks_vs_one_model_bound_pruned"] = round(step["one_rank_cell_s"] / step["pruned_s"], 3)
    out["two_ranks_vs_one_model_bound_unpruned"] = round(step["one_rank_cell_s"] / step["unpruned_s"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
