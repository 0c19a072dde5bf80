/* ferronn LAMMPS plugin: model loading, element names, and the per-rank graph (see ferronn_model.h). */

#include "ferronn_model.h"

#include "lmptype.h"
#include "neigh_list.h"

#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace ferronn {

static const char *SYMBOLS[] = {
    "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",  "S",
    "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",
    "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho",
    "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po",
    "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm"};
static const int NUM_SYMBOLS = sizeof(SYMBOLS) / sizeof(SYMBOLS[0]);

int atomic_number(const std::string &symbol)
{
  for (int z = 1; z < NUM_SYMBOLS; z++)
    if (symbol == SYMBOLS[z]) return z;
  return 0;
}

std::string element_symbol(int z)
{
  return (z > 0 && z < NUM_SYMBOLS) ? SYMBOLS[z] : std::to_string(z);
}

static const int FORMAT = 2;    // newest model file format this plugin reads (ferronn/models/lammps.py)

static std::string hint()
{
  return " (write model files with: python -m ferronn.export --lammps --checkpoint energy.ckpt born.ckpt "
         "--out-dir DIR)";
}

std::string load_model(const std::string &path, const std::string &kind, const std::string &device, Model &out)
{
  if (!std::ifstream(path).good()) return "model file '" + path + "' does not exist or cannot be read";
  torch::jit::ExtraFilesMap extra{{"ferronn_lammps.txt", ""}};
  // The profiling executor re-specialises the graph while atom and edge counts change from step to step
  // (slow first calls, then guards); the plain interpreter ran the 135-atom energy + forces 30% faster.
  torch::jit::setGraphExecutorOptimize(false);
  try {
    out.device = torch::Device(device);
    out.module = torch::jit::load(path, out.device, extra);
  } catch (const std::exception &e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    return "'" + path + "' is not a ferronn LAMMPS model file (" + what + ")" + hint();
  }
  std::unordered_map<std::string, std::string> meta;
  std::istringstream rows(extra["ferronn_lammps.txt"]);
  for (std::string line; std::getline(rows, line);) {
    auto space = line.find(' ');
    if (space != std::string::npos) meta[line.substr(0, space)] = line.substr(space + 1);
  }
  for (const char *key : {"kind", "atomic_numbers", "r_max", "num_interactions", "dtype"})
    if (!meta.count(key))
      return "'" + path + "' has no '" + key + "' in its ferronn_lammps.txt: not a ferronn LAMMPS model file" +
          hint();
  out.path = path;
  out.kind = meta["kind"];
  if (out.kind != kind)
    return "'" + path + "' holds a '" + out.kind + "' model; expected a '" + kind + "' model" + hint();
  std::istringstream numbers(meta["atomic_numbers"]);
  out.atomic_numbers.clear();
  for (int z; numbers >> z;) out.atomic_numbers.push_back(z);
  out.r_max = std::stod(meta["r_max"]);
  out.num_interactions = std::stoi(meta["num_interactions"]);
  out.format = meta.count("format") ? std::atoi(meta["format"].c_str()) : 1;
  if (out.format < 1 || out.format > FORMAT)
    return "'" + path + "' has model file format '" + meta["format"] + "'; this plugin reads formats 1 to " +
        std::to_string(FORMAT) + ": rebuild the plugin (bash lammps/build.sh) from the ferronn that wrote it, or "
        "re-export the model with this one" + hint();
  out.dtype_name = meta["dtype"];
  if (out.dtype_name != "float64" && out.dtype_name != "float32")
    return "'" + path + "': dtype '" + out.dtype_name + "', expected float32 or float64";
  out.dtype = out.dtype_name == "float64" ? torch::kFloat64 : torch::kFloat32;
  out.module.eval();
  return "";
}

std::string map_types(const Model &model, const std::vector<std::string> &elements, std::vector<int64_t> &species)
{
  species.assign(elements.size() + 1, -1);    // LAMMPS types count from 1
  for (size_t t = 0; t < elements.size(); t++) {
    int z = atomic_number(elements[t]);
    if (z == 0)
      return "type " + std::to_string(t + 1) + ": '" + elements[t] + "' is not an element symbol";
    for (size_t s = 0; s < model.atomic_numbers.size(); s++)
      if (model.atomic_numbers[s] == z) species[t + 1] = (int64_t) s;
    if (species[t + 1] < 0) {
      std::string known;
      for (int zz : model.atomic_numbers) known += " " + element_symbol(zz);
      return "type " + std::to_string(t + 1) + ": element " + elements[t] + " is not in model '" +
          model.path + "' (it knows" + known + ")";
    }
  }
  return "";
}

void build_graph(LAMMPS_NS::NeighList *list, double **x, const LAMMPS_NS::tagint *tag, int nlocal, double r_max,
                 int layers, bool fold, Graph &g, NodeMap &node_of)
{
  // Breadth-first search in hops of r_max from the local atoms. Folded: one node per atom ID, at the image the
  // search reached first (the fewest hops, so its neighbour list is complete where it is needed); every other
  // image of that atom is the same node seen through a shift. Unfolded: one node per image.
  const double cutsq = r_max * r_max;
  node_of.clear();
  std::vector<int> &hop = g.hop;
  g.atoms.clear();
  hop.clear();
  g.nlocal = nlocal;
  auto within = [&](int i, int j) {
    double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
    return dx * dx + dy * dy + dz * dz < cutsq;
  };
  // Folded: the atom ID; unfolded: the image's own LAMMPS index.
  auto key = [&](int j) { return fold ? (int64_t) tag[j] : (int64_t) j; };
  for (int i = 0; i < nlocal; i++) {
    node_of.insert(key(i), i);
    g.atoms.push_back(i);
    hop.push_back(0);
  }
  size_t begin = 0;
  for (int h = 1; h <= layers; h++) {
    size_t end = g.atoms.size();
    for (size_t k = begin; k < end; k++) {
      int i = g.atoms[k];
      const int *jlist = list->firstneigh[i];
      for (int jj = 0; jj < list->numneigh[i]; jj++) {
        int j = jlist[jj] & NEIGHMASK;
        if (within(i, j) && node_of.insert(key(j), (int) g.atoms.size())) {
          g.atoms.push_back(j);
          hop.push_back(h);
        }
      }
    }
    begin = end;
  }
  // Edges into receivers of hop <= layers-1 (every neighbour of those has a node by construction), from the
  // sender's node with shift x_node - x_j: the edge vector x_i - x_node + shift is x_i - x_j.
  std::vector<int64_t> senders, receivers;
  g.shifts.clear();
  for (size_t k = 0; k < g.atoms.size(); k++) {
    if (hop[k] > layers - 1) continue;
    int i = g.atoms[k];
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      if (!within(i, j)) continue;
      int o = node_of.at(key(j));
      if (o < 0) throw std::logic_error("ferronn: graph search missed a neighbour of a receiver (a bug)");
      int xo = g.atoms[o];
      senders.push_back(o);
      receivers.push_back((int64_t) k);
      for (int c = 0; c < 3; c++) g.shifts.push_back(x[xo][c] - x[j][c]);
    }
  }
  g.edge_index.clear();
  g.edge_index.reserve(2 * senders.size());
  g.edge_index.insert(g.edge_index.end(), senders.begin(), senders.end());
  g.edge_index.insert(g.edge_index.end(), receivers.begin(), receivers.end());
}

std::vector<torch::jit::IValue> graph_inputs(const Model &model, const Graph &g, double **x, const int *type,
                                             const std::vector<int64_t> &type_species, bool requires_grad,
                                             torch::Tensor &positions, torch::Tensor &shifts)
{
  const int64_t n = (int64_t) g.atoms.size();
  auto pos = torch::empty({n, 3}, torch::kFloat64);
  auto spec = torch::empty({n}, torch::kInt64);
  double *p = pos.data_ptr<double>();
  int64_t *s = spec.data_ptr<int64_t>();
  for (int64_t k = 0; k < n; k++) {
    int i = g.atoms[k];
    p[3 * k] = x[i][0];
    p[3 * k + 1] = x[i][1];
    p[3 * k + 2] = x[i][2];
    s[k] = type_species[type[i]];
  }
  auto edges = torch::from_blob(const_cast<int64_t *>(g.edge_index.data()), {2, g.num_edges()}, torch::kInt64);
  auto shift = torch::from_blob(const_cast<double *>(g.shifts.data()), {g.num_edges(), 3}, torch::kFloat64);
  positions = pos.to(model.device, model.dtype);
  shifts = shift.to(model.device, model.dtype);
  if (shifts.data_ptr() == shift.data_ptr()) shifts = shifts.clone();    // own the memory autograd may keep
  if (requires_grad) {
    positions.requires_grad_(true);
    shifts.requires_grad_(true);
  }
  if (model.format < 2) return {positions, spec.to(model.device), edges.to(model.device), shifts};
  return {positions, spec.to(model.device), edges.to(model.device), shifts, torch::tensor((int64_t) g.nlocal)};
}

}    // namespace ferronn
