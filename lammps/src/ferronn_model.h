/* ferronn LAMMPS plugin: model files and the domain-decomposed graph.

   A model file is a TorchScript module written by `python -m ferronn.export --lammps`
   (ferronn/models/lammps.py) with an extra file `ferronn_lammps.txt` of `key value` rows.
   Both models take (positions (N,3) Å, species (N,) int64, edge_index (2,E) int64, shifts (E,3) Å, nlocal ()
   int64), the edge vector being r_receiver - r_sender + shift, nodes 0..nlocal-1 the local atoms; they return
   the local atoms' outputs only and evaluate each layer only where those need it (receiver pruning). Files of
   format 1 (no "format" row: written before pruning) take no nlocal and return every node; they still run,
   unpruned. The graph that feeds them is Graph below (folded by default, or one node per ghost image).
     energy -> per-atom energy (nlocal,) eV, float64
     born   -> per-atom Z* (nlocal,3,3) e before the acoustic sum rule (the fix subtracts the global mean). */

#ifndef FERRONN_MODEL_H
#define FERRONN_MODEL_H

#include <torch/csrc/autograd/autograd.h>
#include <torch/script.h>

#include <algorithm>
#include <string>
#include <vector>

#include "lmptype.h"

namespace LAMMPS_NS {
class NeighList;
}

namespace ferronn {

struct Model {
  torch::jit::Module module;
  std::string path, kind, dtype_name;
  std::vector<int> atomic_numbers;    // model species s is element atomic_numbers[s]
  double r_max = 0.0;                 // Å, the edge cutoff
  int num_interactions = 0;           // message-passing layers: the receptive field is layers * r_max
  int format = 1;                     // inputs version (ferronn/models/lammps.py FORMAT): 2 takes nlocal
  torch::ScalarType dtype = torch::kFloat64;
  torch::Device device = torch::kCPU;
};

// Loads `path` and checks it holds a model of `kind` ("energy" or "born"); returns "" or a one-line error.
std::string load_model(const std::string &path, const std::string &kind, const std::string &device, Model &out);

// Atomic number of an element symbol (0 if not an element), and the symbol of an atomic number.
int atomic_number(const std::string &symbol);
std::string element_symbol(int z);

// Species index of every LAMMPS type (1..ntypes) from element names given per type; "" or an error line.
std::string map_types(const Model &model, const std::vector<std::string> &elements, std::vector<int64_t> &species);

/* The graph one rank feeds a model with L = num_interactions layers and cutoff r_max.
   Nodes: the local atoms (hop 0), then the atoms reachable in <= L hops of r_max from them, in hop order.
   Edges j -> i for every receiver i of hop <= L-1 and neighbour j within r_max: after L layers the features of
   the local atoms are exact (those of farther nodes are not, and are not used).
   Folded (graph auto): one node per atom ID. A ghost that is a periodic image of an atom already in the graph
   (a local atom, or another image reached in fewer hops) is not a node of its own: its edges come from that
   atom's node with a Cartesian shift, as in ferronn.md's periodic graph. On one rank of a periodic box every
   ghost folds onto a local atom, so the graph is exactly the engine's (no ghost shell); on several ranks only
   the atoms other ranks own remain as ghost nodes. Unfolded (graph ghost): one node per image, shifts zero. */
struct Graph {
  std::vector<int> atoms;              // LAMMPS index of each node (its image); node k = atom k for k < nlocal
  std::vector<int> hop;                // hops from the local atoms of each node
  std::vector<int64_t> edge_index;     // 2*E: senders (row 0) then receivers (row 1), node indices
  std::vector<double> shifts;          // 3*E, Å: edge vector = x_receiver - x_sender + shift
  int nlocal = 0;
  int64_t num_edges() const { return (int64_t) edge_index.size() / 2; }
};

/* Node of each key (an atom ID when folded, a LAMMPS index when not): a dense array, as `atom_modify map array`
   is, since both keys are small non-negative integers. Lookups are two loads instead of a hash; clear() resets
   only the entries the last build set, so a step costs O(nodes), not O(largest atom ID). */
class NodeMap {
 public:
  // Inserts key -> node if the key has none; true if it was inserted.
  bool insert(int64_t key, int node)
  {
    if (key >= (int64_t) slot.size()) slot.resize(std::max<size_t>(2 * slot.size(), key + 1), -1);
    if (slot[key] >= 0) return false;
    slot[key] = node;
    used.push_back(key);
    return true;
  }
  // The node of a key that has one (-1 if none).
  int at(int64_t key) const { return key < (int64_t) slot.size() ? slot[key] : -1; }
  void clear()
  {
    for (int64_t k : used) slot[k] = -1;
    used.clear();
  }

 private:
  std::vector<int> slot;
  std::vector<int64_t> used;
};

// Builds `g` from a full neighbour list that includes ghost atoms' neighbours (REQ_FULL | REQ_GHOST).
void build_graph(LAMMPS_NS::NeighList *list, double **x, const LAMMPS_NS::tagint *tag, int nlocal, double r_max,
                 int layers, bool fold, Graph &g, NodeMap &node_of);

// Model inputs of a graph: positions and shifts (in the model's dtype, requires_grad if asked), species, edges,
// and (format >= 2) the number of local nodes.
std::vector<torch::jit::IValue> graph_inputs(const Model &model, const Graph &g, double **x, const int *type,
                                             const std::vector<int64_t> &type_species, bool requires_grad,
                                             torch::Tensor &positions, torch::Tensor &shifts);

}    // namespace ferronn

#endif
