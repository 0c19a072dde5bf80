/* pair_style ferronn (see pair_ferronn.h). */

#include "pair_ferronn.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <dlfcn.h>
#include <malloc.h>

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
    } else if (strcmp(arg[i], "heap") == 0 && i + 1 < narg &&
               (strcmp(arg[i + 1], "yes") == 0 || strcmp(arg[i + 1], "no") == 0)) {
      heap = strcmp(arg[++i], "yes") == 0;
    } else if (strcmp(arg[i], "graph") == 0 && i + 1 < narg &&
               (strcmp(arg[i + 1], "auto") == 0 || strcmp(arg[i + 1], "ghost") == 0)) {
      graph_mode = arg[++i];
    } else {
      error->all(FLERR, "pair_style ferronn: unknown argument '{}' (usage: pair_style ferronn [device cpu|cuda] "
                 "[graph auto|ghost] [heap yes|no])", arg[i]);
    }
  }
  // heap yes (CPU): glibc gives every freed block above its mmap threshold (<= 32 MiB) back to the kernel, and
  // the models' edge tensors are larger than that from ~100 atoms per rank on, so each step re-faulted ~0.5 GB
  // of fresh pages (1080 atoms, 1 thread: 25% of the step in the kernel). Keeping them on the heap with trimming
  // off is what ferronn.md does (ferronn/md/heap.py says why both settings); the price is that the process
  // keeps its peak memory. Process-wide, so once.
  if (heap && device.rfind("cuda", 0) != 0) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, -1);    // stored as size_t: never trim
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
  fold = graph_mode == "auto";
  // Every node within L-1 hops needs its full neighbourhood: ghosts out to L * r_max (+ skin). On one rank of a
  // periodic box every ghost folds onto a local atom, so only the local atoms' neighbour lists are read and the
  // neighbour list's own cutoff (r_max + skin) is enough.
  all_local = fold && comm->nprocs == 1 && domain->xperiodic && domain->yperiodic && domain->zperiodic;
  double need = (all_local ? model.r_max : model.num_interactions * model.r_max) + neighbor->skin;
  if (comm->cutghostuser < need) comm->cutghostuser = need;
  reported = 0;
}

double PairFerronn::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = model.r_max;
  return model.r_max;
}

void PairFerronn::build(ferronn::Graph &g, double r_max, int layers)
{
  ferronn::build_graph(list, atom->x, atom->tag, atom->nlocal, r_max, layers, fold, g, node_of);
}

// The library whose dgemm_ this library's scope binds to: libtorch_cpu's own under the loader's RTLD_DEEPBIND,
// liblammps' reference BLAS if the styles were linked into the process' global scope (ferronn_loader.cpp).
static std::string blas_provider()
{
  Dl_info info;
  void *symbol = dlsym(RTLD_DEFAULT, "dgemm_");
  if (!symbol || !dladdr(symbol, &info) || !info.dli_fname) return "nowhere";
  std::string path = info.dli_fname;
  return path.substr(path.find_last_of('/') + 1);
}

void PairFerronn::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  double **x = atom->x, **f = atom->f;
  const int nlocal = atom->nlocal;
  local_energy = 0.0;
  if (nlocal > 0) {    // a rank that owns no atoms has no energy and puts no force on its ghosts
    build(graph, model.r_max, model.num_interactions);
    torch::Tensor positions, shifts;
    auto inputs = ferronn::graph_inputs(model, graph, x, atom->type, type_species, true, positions, shifts);
    torch::Tensor node_energy, forces, shift_grad;
    try {
      node_energy = model.module.forward(inputs).toTensor();
      auto energy = node_energy.narrow(0, 0, nlocal).sum();    // only local atoms' energies count
      auto grads = torch::autograd::grad({energy}, {positions, shifts}, {}, false, false, true);
      forces = -grads[0];
      shift_grad = grads[1].defined() ? grads[1] : torch::zeros_like(shifts);
    } catch (const std::exception &e) {
      std::string what = e.what();
      error->one(FLERR, "pair_style ferronn: the energy model failed on {} atoms, {} edges: {}",
                 graph.atoms.size(), graph.num_edges(), what.substr(0, what.find('\n')));
    }
    auto e_cpu = node_energy.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    auto f_cpu = forces.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    auto g_cpu = shift_grad.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    const double *fe = f_cpu.data_ptr<double>(), *ee = e_cpu.data_ptr<double>(), *ge = g_cpu.data_ptr<double>();
    for (size_t k = 0; k < graph.atoms.size(); k++) {
      int i = graph.atoms[k];
      f[i][0] += fe[3 * k];
      f[i][1] += fe[3 * k + 1];
      f[i][2] += fe[3 * k + 2];
    }
    if (vflag_global) {    // W = sum_k r_k (x) F_k - sum_e s_e (x) dU/ds_e (shifts are zero unfolded)
      for (size_t k = 0; k < graph.atoms.size(); k++) {
        const double *r = x[graph.atoms[k]], *fk = fe + 3 * k;
        virial[0] += r[0] * fk[0];
        virial[1] += r[1] * fk[1];
        virial[2] += r[2] * fk[2];
        virial[3] += r[0] * fk[1];
        virial[4] += r[0] * fk[2];
        virial[5] += r[1] * fk[2];
      }
      for (int64_t e = 0; fold && e < graph.num_edges(); e++) {
        const double *sh = &graph.shifts[3 * e], *ge3 = ge + 3 * e;
        virial[0] -= sh[0] * ge3[0];
        virial[1] -= sh[1] * ge3[1];
        virial[2] -= sh[2] * ge3[2];
        virial[3] -= sh[0] * ge3[1];
        virial[4] -= sh[0] * ge3[2];
        virial[5] -= sh[1] * ge3[2];
      }
    }
    for (int i = 0; i < nlocal; i++) local_energy += ee[i];
    if (!reported && comm->me == 0) {    // the ghost shell's cost, once per run: nodes beyond nlocal are ghosts
      utils::logmesg(lmp, "pair ferronn: {} graph on rank 0: {} nodes ({} local), {} edges; ghost cutoff {} A; "
                     "model file format {}{}; dgemm_ from {}\n", fold ? "folded" : "unfolded",
                     graph.atoms.size(), nlocal, graph.num_edges(), comm->cutghostuser, model.format,
                     model.format < 2 ? " (receivers not pruned: re-export the model for faster multi-rank runs)" : "",
                     blas_provider());
      reported = 1;
    }
    if (eflag_atom)
      for (int i = 0; i < nlocal; i++) eatom[i] += ee[i];
  }
  if (eflag_global) eng_vdwl += local_energy;
}
