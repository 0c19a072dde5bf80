/* fix ferronn/field: a uniform field E(t) through ferronn's Born charges, and the cell dipole on the fly.

     fix ID all ferronn/field born.lammps.pt constant Ex Ey Ez           (V/Angstrom)
     fix ID all ferronn/field born.lammps.pt sine Ex Ey Ez period [phase] (period in time units: ps in metal)
     fix ID all ferronn/field born.lammps.pt variable v_ex v_ey v_ez     (equal-style variables, V/Angstrom)

   Needs pair_style ferronn (its neighbour list and type -> element map). Every step, after the pair forces:
     Z*_k = Z*raw_k - (1/N) sum_l Z*raw_l   (acoustic sum rule over all ranks' atoms)
     F_k += Z*_k^T E(t)                      (Z*[a][b] = dF_b/dE_a, CONVENTIONS.md)
     M  += sum_k 1/2 (Z*_k(t-dt) + Z*_k(t)) (r_k(t) - r_k(t-dt))   (trapezoid, unwrapped r, as ferronn.md)
   Z*(t-dt) and r(t-dt) are per-atom arrays that migrate with atoms and go into restart files; M is global.
   Z* stays on the model's device: a step brings back its 9-number local sum (for the sum rule's MPI_Allreduce),
   the field forces and the 3-number dipole step; Z*(t-dt) and r(t-dt) are downloaded into the per-atom arrays
   only when LAMMPS migrates, sorts or writes atoms (once per reneighbouring), and uploaded after.
   The field adds no virial (the clamped-ion field stress is neglected, as in ferronn.md).
   Outputs: f_ID = -M.E (eV; with fix_modify energy yes, pe = U0 - M.E), f_ID[1..3] M (e*Angstrom),
   f_ID[4..6] P = M/V (uC/cm^2), f_ID[7..9] E (V/Angstrom), f_ID[10] H = K + U0 - M.E (eV). */

#ifdef FIX_CLASS
// clang-format off
FixStyle(ferronn/field,FixFerronnField);
// clang-format on
#else

#ifndef LMP_FIX_FERRONN_FIELD_H
#define LMP_FIX_FERRONN_FIELD_H

#include "fix.h"

#include "ferronn_model.h"

namespace LAMMPS_NS {

class FixFerronnField : public Fix {
 public:
  FixFerronnField(class LAMMPS *, int, char **);
  ~FixFerronnField() override;
  int setmask() override;
  void init() override;
  void setup(int) override;
  void post_force(int) override;
  double compute_scalar() override;
  double compute_vector(int) override;

  void write_restart(FILE *) override;
  void restart(char *) override;
  void grow_arrays(int) override;
  void copy_arrays(int, int, int) override;
  int pack_exchange(int, double *) override;
  int unpack_exchange(int, double *) override;
  int pack_restart(int, double *) override;
  void unpack_restart(int, int) override;
  int size_restart(int) override;
  int maxsize_restart() override;
  double memory_usage() override;

 private:
  enum { CONSTANT, SINE, VARIABLE } kind;
  ferronn::Model born;
  double amplitude[3] = {0, 0, 0}, period = 0.0, phase = 0.0;
  std::string varname[3];
  int varindex[3] = {-1, -1, -1};
  double field[3] = {0, 0, 0};     // E at the last force evaluation, V/Angstrom
  double dipole[3] = {0, 0, 0};    // M, e*Angstrom
  int have_previous = 0;           // 0 until the first force evaluation has filled zprev/xprev
  double **zprev = nullptr;        // (nmax, 9) Z* of the last evaluation, row-major [a][b] (when host_current)
  double **xprev = nullptr;        // (nmax, 3) unwrapped positions at the last evaluation (when host_current)
  torch::Tensor zprev_dev, xprev_dev;    // the same (nlocal,3,3) and (nlocal,3), float64, on the model's device
  bool host_current = true;        // zprev/xprev hold the latest values
  bool device_current = false;     // zprev_dev/xprev_dev do
  class PairFerronn *pair = nullptr;
  std::vector<int64_t> born_species;    // Born-model species of each LAMMPS type
  ferronn::Graph graph;
  bigint vector_step = -1;
  double vector_cache[10];

  void evaluate_field();
  void fill_vector();
  void sync_host();                // device -> per-atom arrays, if they are behind
  void device_previous(int nlocal);    // per-atom arrays -> device, if it is behind
  torch::TensorOptions device_float64() const;    // float64 on the Born model's device
};

}    // namespace LAMMPS_NS

#endif
#endif
