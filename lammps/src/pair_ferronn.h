/* pair_style ferronn: the ferronn energy model (MACE) on local + ghost atoms.

     pair_style ferronn [device cpu|cuda|cuda:N] [graph auto|ghost] [heap yes|no]
     pair_coeff * * energy.lammps.pt Ba Ti O        (one element per LAMMPS type)

   U0 = sum of the per-atom energies of this rank's local atoms; forces -dU0/dr by autograd, on local atoms and
   on the ghost images that are nodes (reverse-communicated to their owners: newton_pair on).
   graph auto (default): ghost images fold onto one node per atom ID (ferronn_model.h), so on one rank of a
     periodic box the nodes are the local atoms only (ferronn.md's periodic graph) and on several ranks only the
     atoms of other ranks are ghost nodes, out to num_interactions hops of r_max.
   graph ghost: one node per ghost image, shifts zero (every image is evaluated; for checks).
   Virial sum_k r_k (x) F_k - sum_e s_e (x) dU/ds_e over the graph's nodes k and edge shifts s_e, exact for an
   energy of relative positions; both gradients come from one backward pass.
   No per-atom virial. */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(ferronn,PairFerronn);
// clang-format on
#else

#ifndef LMP_PAIR_FERRONN_H
#define LMP_PAIR_FERRONN_H

#include "pair.h"

#include "ferronn_model.h"

namespace LAMMPS_NS {

class PairFerronn : public Pair {
 public:
  PairFerronn(class LAMMPS *);
  ~PairFerronn() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

  // Read by fix ferronn/field: the model's species of each LAMMPS type, this rank's last U0, the device.
  std::vector<int64_t> type_species;
  std::vector<std::string> type_elements;
  double local_energy = 0.0;    // eV, sum over this rank's local atoms at the last compute()
  std::string device = "cpu";
  ferronn::Model model;
  bool fold = true;               // graph auto: ghost images fold onto one node per atom ID (ferronn_model.h)
  bool all_local = false;         // set in init_style: folded, one rank, periodic box (no ghost nodes at all)
  std::string graph_mode = "auto";
  bool heap = true;    // keep large CPU allocations on glibc's heap (settings() says why)
  // Builds the graph of a model (energy or Born) in this run's mode.
  void build(ferronn::Graph &g, double r_max, int layers);

 protected:
  ferronn::Graph graph;
  ferronn::NodeMap node_of;
  int reported = 0;    // graph size logged for this run
  void allocate();
};

}    // namespace LAMMPS_NS

#endif
#endif
