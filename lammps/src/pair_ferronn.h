/* pair_style ferronn: the ferronn energy model (MACE) on local + ghost atoms.

     pair_style ferronn [device cpu|cuda|cuda:N]
     pair_coeff * * energy.lammps.pt Ba Ti O        (one element per LAMMPS type)

   U0 = sum of the per-atom energies of this rank's local atoms; forces -dU0/dr on local and ghost atoms by
   autograd, the ghost ones reverse-communicated (newton_pair on); virial sum_i r_i (x) F_i over local + ghost
   atoms (virial_fdotr_compute), exact for an energy of relative positions. */

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
  // The ghost cutoff a fix asks for in addition to the model's own (layers * r_max).
  double extra_ghost_cutoff = 0.0;

 protected:
  ferronn::Graph graph;
  std::vector<int> scratch;
  void allocate();
};

}    // namespace LAMMPS_NS

#endif
#endif
