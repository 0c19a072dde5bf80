"""Receiver pruning: the message-passing loop of both models, evaluated only where the local atoms need it.

After L layers an atom's features depend on its L-hop neighbourhood. A domain-decomposed engine (the LAMMPS
plugin) hands a rank its local atoms plus ghost atoms out to L hops, but wants features, energies and Z* of
the local atoms only. Walking the edges backwards from them gives the nodes S_t whose features layer t must
produce: S_{L-1} = local atoms, S_{t-1} = S_t ∪ {senders of edges into S_t}. Layer t then takes only the edges
into S_t and computes node updates (products) only on S_t; its senders all lie in S_{t-1}, where the previous
layer left exact features. Without a plan (every node local: training, the engine, one LAMMPS rank of a
periodic box) the loop is mace's own, op for op, so those paths give bit-identical numbers.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import torch


class Layer(NamedTuple):
    """Index tensors of one layer t (all int64): edges (into the used-edge list) whose receiver is in S_t,
    the edge index in the node numbering of the layer's input rows S_{t-1} (all nodes for t = 0), the rows of
    S_t among those input rows, and the rows of the local atoms among S_t."""

    edges: torch.Tensor
    edge_index: torch.Tensor
    rows: torch.Tensor
    local: torch.Tensor


class Plan(NamedTuple):
    """Which edges (indices into the input edge list) any layer uses, the local atoms' node indices (the
    outputs' rows), and each layer's indices."""

    used_edges: torch.Tensor
    local_nodes: torch.Tensor
    layers: List[Layer]


def plan(edge_index: torch.Tensor, num_nodes: int, nlocal: torch.Tensor, num_layers: int) -> Plan:
    """The pruning of a graph whose nodes 0..nlocal-1 are the local atoms (``nlocal`` a 0-d int64 tensor, so a
    traced module stays dynamic in it); shapes follow the data, so the trace holds for any atom or edge count."""
    senders, receivers = edge_index[0], edge_index[1]
    needed = [torch.arange(num_nodes, device=edge_index.device) < nlocal]  # S_{L-1}, then backwards
    for _ in range(num_layers - 1):
        into = needed[0].index_select(0, receivers)
        needed.insert(0, needed[0].index_fill(0, senders[into], 1))  # an int: the tracer has no bool overload
    used = torch.nonzero(needed[0].index_select(0, receivers)).squeeze(1)
    local_nodes = torch.nonzero(needed[-1]).squeeze(1)
    used_index = edge_index.index_select(1, used)
    layers = []
    for t in range(num_layers):
        position = torch.cumsum(needed[t].to(torch.int64), 0) - 1  # row of each node of S_t within S_t
        rows = torch.nonzero(needed[t]).squeeze(1)
        local = position.index_select(0, local_nodes)
        if t == 0:
            layers.append(Layer(torch.arange(used.shape[0], device=used.device), used_index, rows, local))
            continue
        previous = torch.cumsum(needed[t - 1].to(torch.int64), 0) - 1
        edges = torch.nonzero(needed[t].index_select(0, used_index[1])).squeeze(1)
        index = previous.index_select(0, used_index.index_select(1, edges).reshape(-1)).reshape(2, -1)
        layers.append(Layer(edges, index, previous.index_select(0, rows), local))
    return Plan(used, local_nodes, layers)


def used_edges(edge_index: torch.Tensor, shifts: torch.Tensor, prune: Optional[Plan]):
    """(edge_index, shifts) of the edges some layer uses: all of them without a plan."""
    if prune is None:
        return edge_index, shifts
    return edge_index.index_select(1, prune.used_edges), shifts.index_select(0, prune.used_edges)


def message_passing(interactions, products, node_attrs: torch.Tensor, node_feats: torch.Tensor,
                    edge_attrs: torch.Tensor, edge_feats: torch.Tensor, cutoff: Optional[torch.Tensor],
                    edge_index: torch.Tensor, prune: Optional[Plan]) -> List[torch.Tensor]:
    """Hidden features after each layer (mace's interaction → product), on the local atoms' rows in node order
    (all rows without a plan). ``edge_*`` and ``edge_index`` are those of ``used_edges``."""
    out: List[torch.Tensor] = []
    attrs = node_attrs
    for t, (interaction, product) in enumerate(zip(interactions, products)):
        if prune is None:
            node_feats, sc = interaction(node_attrs=node_attrs, node_feats=node_feats, edge_attrs=edge_attrs,
                                         edge_feats=edge_feats, edge_index=edge_index, cutoff=cutoff,
                                         first_layer=t == 0)
            node_feats = product(node_feats=node_feats, sc=sc, node_attrs=node_attrs)
            out.append(node_feats)
            continue
        layer = prune.layers[t]
        pick = (lambda x: x) if t == 0 else (lambda x: x.index_select(0, layer.edges))
        node_feats, sc = interaction(node_attrs=attrs, node_feats=node_feats, edge_attrs=pick(edge_attrs),
                                     edge_feats=pick(edge_feats), edge_index=layer.edge_index,
                                     cutoff=None if cutoff is None else pick(cutoff), first_layer=t == 0)
        # Rows outside S_t got no messages: drop them before the product, the costliest node update.
        attrs = attrs.index_select(0, layer.rows)
        node_feats = node_feats.index_select(0, layer.rows)
        sc = None if sc is None else sc.index_select(0, layer.rows)
        node_feats = product(node_feats=node_feats, sc=sc, node_attrs=attrs)
        out.append(node_feats.index_select(0, layer.local))
    return out
