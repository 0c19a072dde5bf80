/* pair_style ferronn (see pair_ferronn.h). */

#include "pair_ferronn.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include <algorithm>
#include <cstring>

using namespace LAMMPS_NS;

PairFerronn::PairFerronn(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  ghostneigh = 1;    // message passing: ghosts need their own neighbours (see ferronn::build_graph)
  no_virial_fdotr_compute = 1;    // the virial is summed in compute() over the graph's atoms (also with vflag_atom)
}

PairFerronn::~PairFerronn()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairFerronn::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

void PairFerronn::settings(int narg, char **arg)
{
  for (int i = 0; i < narg; i++) {
    if (strcmp(arg[i], "device") == 0 && i + 1 < narg) {
      device = arg[++i];
    } else {
      error->all(FLERR, "pair_style ferronn: unknown argument '{}' (usage: pair_style ferronn [device cpu|cuda])",
                 arg[i]);
    }
  }
}

void PairFerronn::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff ferronn: expected '* * energy.lammps.pt' and {} element name(s), one per "
               "atom type; got {} argument(s)", ntypes, narg);
  std::string why = ferronn::load_model(arg[2], "energy", device, model);
  if (!why.empty()) error->all(FLERR, "pair_coeff ferronn: {}", why);
  type_elements.assign(arg + 3, arg + narg);
  why = ferronn::map_types(model, type_elements, type_species);
  if (!why.empty()) error->all(FLERR, "pair_coeff ferronn: {}", why);
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairFerronn::init_style()
{
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style ferronn needs newton_pair on (forces on ghost atoms are reverse-communicated)");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style ferronn needs units metal (eV, Angstrom, ps); got units {}", update->unit_style);
  if (atom->natoms > 0 && !atom->tag_enable) error->all(FLERR, "pair_style ferronn needs atom IDs");
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  // Ghosts out to layers * r_max (+ skin): every node of level <= layers-1 then has its full neighbourhood.
  double need = std::max(model.num_interactions * model.r_max, extra_ghost_cutoff) + neighbor->skin;
  if (comm->cutghostuser < need) comm->cutghostuser = need;
}

double PairFerronn::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = model.r_max;
  return model.r_max;
}

void PairFerronn::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  double **x = atom->x, **f = atom->f;
  const int nlocal = atom->nlocal, nall = atom->nlocal + atom->nghost;
  local_energy = 0.0;
  if (nlocal > 0) {    // a rank that owns no atoms has no energy and puts no force on its ghosts
    ferronn::build_graph(list, x, nlocal, nall, model.r_max, model.num_interactions, graph, scratch);
    torch::Tensor positions;
    auto inputs = ferronn::graph_inputs(model, graph, x, atom->type, type_species, true, positions);
    torch::Tensor node_energy, forces;
    try {
      node_energy = model.module.forward(inputs).toTensor();
      auto energy = node_energy.narrow(0, 0, nlocal).sum();    // only local atoms' energies count
      forces = -torch::autograd::grad({energy}, {positions})[0];
    } catch (const std::exception &e) {
      std::string what = e.what();
      error->one(FLERR, "pair_style ferronn: the energy model failed on {} atoms, {} edges: {}",
                 graph.atoms.size(), graph.num_edges(), what.substr(0, what.find('\n')));
    }
    auto e_cpu = node_energy.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    auto f_cpu = forces.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    const double *fe = f_cpu.data_ptr<double>(), *ee = e_cpu.data_ptr<double>();
    for (size_t k = 0; k < graph.atoms.size(); k++) {
      int i = graph.atoms[k];
      f[i][0] += fe[3 * k];
      f[i][1] += fe[3 * k + 1];
      f[i][2] += fe[3 * k + 2];
    }
    if (vflag_global) {    // W = sum_k r_k (x) F_k over local + ghost nodes: forces of an energy of relative positions
      for (size_t k = 0; k < graph.atoms.size(); k++) {
        const double *r = x[graph.atoms[k]], *fk = fe + 3 * k;
        virial[0] += r[0] * fk[0];
        virial[1] += r[1] * fk[1];
        virial[2] += r[2] * fk[2];
        virial[3] += r[0] * fk[1];
        virial[4] += r[0] * fk[2];
        virial[5] += r[1] * fk[2];
      }
    }
    for (int i = 0; i < nlocal; i++) local_energy += ee[i];
    if (eflag_atom)
      for (int i = 0; i < nlocal; i++) eatom[i] += ee[i];
  }
  if (eflag_global) eng_vdwl += local_energy;
}
