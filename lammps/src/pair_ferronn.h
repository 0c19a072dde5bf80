/* pair_style ferronn: the ferronn energy model (MACE) on local + ghost atoms.

     pair_style ferronn [device cpu|cuda|cuda:N] [graph auto|ghost] [heap yes|no]
     pair_coeff * * energy.lammps.pt Ba Ti O        (one element per LAMMPS type)

   U0 = sum of the per-atom energies of this rank's local atoms; forces -dU0/dr by autograd.
   graph ghost (several ranks, or asked for): nodes are local atoms and ghosts within num_interactions hops of
     r_max; forces land on ghosts too and are reverse-communicated (newton_pair on); virial sum_k r_k (x) F_k
     over local + ghost nodes, exact for an energy of relative positions.
   graph auto on one rank of a periodic box: nodes are the local atoms only, ghosts folded onto their owners as
     edge shifts s (the periodic graph of ferronn.md, no ghost shell to evaluate); virial
     sum_k r_k (x) F_k - sum_e s_e (x) dU/ds_e.
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
  bool periodic_graph = false;    // decided in init_style: one rank, periodic in x, y, z, and graph auto
  std::string graph_mode = "auto";
  bool heap = true;    // keep large CPU allocations on glibc's heap (settings() says why)
  // Builds the graph of a model (energy or Born) in this run's mode.
  void build(ferronn::Graph &g, double r_max, int layers);

 protected:
  ferronn::Graph graph;
  std::vector<int> scratch, owner;
  int reported = 0;    // graph size logged for this run
  void allocate();
};

}    // namespace LAMMPS_NS

#endif
#endif
