/* fix ferronn/field (see fix_ferronn_field.h for the physics and the syntax). */

#include "fix_ferronn_field.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "input.h"
#include "memory.h"
#include "modify.h"
#include "neighbor.h"
#include "pair_ferronn.h"
#include "update.h"
#include "utils.h"
#include "variable.h"

#include <cmath>
#include <cstring>

using namespace LAMMPS_NS;
using namespace FixConst;

static const double E_PER_A2_TO_UC_PER_CM2 = 1602.176634;    // 1 e/Angstrom^2 in uC/cm^2 (CONVENTIONS.md)
static const int PERATOM = 12;                                 // Z*(t-dt) (9) and unwrapped r(t-dt) (3)

FixFerronnField::FixFerronnField(LAMMPS *lmp, int narg, char **arg) : Fix(lmp, narg, arg)
{
  const char *usage = "fix ID all ferronn/field born.lammps.pt constant Ex Ey Ez | sine Ex Ey Ez period [phase] | "
                      "variable v_Ex v_Ey v_Ez";
  if (narg < 5) error->all(FLERR, "fix ferronn/field: too few arguments; usage: {}", usage);
  for (const char *word : {"constant", "sine", "variable", "NULL", "none"})
    if (strcmp(arg[3], word) == 0)
      error->all(FLERR, "fix ferronn/field: field forces need Born charges: the first argument must be a Born model "
                 "file (born.lammps.pt from python -m ferronn.export --lammps), got '{}'; usage: {}", arg[3], usage);
  if (igroup != 0)
    error->all(FLERR, "fix ferronn/field must act on group all (Z* obeys the sum rule over all atoms), got group {}",
               arg[1]);
  std::string why = ferronn::load_model(arg[3], "born", "cpu", born);
  if (!why.empty()) error->all(FLERR, "fix ferronn/field: {}", why);

  const std::string word = arg[4];
  const int nvalues = narg - 5;
  if (word == "constant" || word == "sine") {
    kind = word == "constant" ? CONSTANT : SINE;
    const bool ok = kind == CONSTANT ? nvalues == 3 : (nvalues == 4 || nvalues == 5);
    if (!ok)
      error->all(FLERR, "fix ferronn/field: a {} field takes {} (V/Angstrom{}), got {} value(s)", word,
                 kind == CONSTANT ? "3 numbers Ex Ey Ez" : "Ex Ey Ez period [phase]",
                 kind == CONSTANT ? "" : "; period in time units", nvalues);
    for (int k = 0; k < 3; k++) amplitude[k] = utils::numeric(FLERR, arg[5 + k], false, lmp);
    if (kind == SINE) {
      period = utils::numeric(FLERR, arg[8], false, lmp);
      if (!(period > 0)) error->all(FLERR, "fix ferronn/field: the sine period must be > 0, got {}", arg[8]);
      if (nvalues == 5) phase = utils::numeric(FLERR, arg[9], false, lmp);
    }
  } else if (word == "variable") {
    kind = VARIABLE;
    if (nvalues != 3)
      error->all(FLERR, "fix ferronn/field: a variable field takes 3 equal-style variables v_Ex v_Ey v_Ez, got {} "
                 "value(s)", nvalues);
    for (int k = 0; k < 3; k++) {
      if (strncmp(arg[5 + k], "v_", 2) != 0)
        error->all(FLERR, "fix ferronn/field: variable field component {} must be v_NAME, got '{}'", k + 1,
                   arg[5 + k]);
      varname[k] = arg[5 + k] + 2;
    }
  } else {
    error->all(FLERR, "fix ferronn/field: unknown field kind '{}'; usage: {}", word, usage);
  }

  scalar_flag = 1;
  extscalar = 1;
  vector_flag = 1;
  size_vector = 10;
  extvector = 0;
  global_freq = 1;
  energy_global_flag = 1;    // fix_modify energy yes adds -M.E to pe
  restart_global = 1;
  restart_peratom = 1;
  time_depend = 1;

  grow_arrays(atom->nmax);
  atom->add_callback(Atom::GROW);
  atom->add_callback(Atom::RESTART);
}

FixFerronnField::~FixFerronnField()
{
  atom->delete_callback(id, Atom::GROW);
  atom->delete_callback(id, Atom::RESTART);
  memory->destroy(zprev);
  memory->destroy(xprev);
}

int FixFerronnField::setmask()
{
  return POST_FORCE;
}

void FixFerronnField::init()
{
  pair = dynamic_cast<PairFerronn *>(force->pair_match("ferronn", 1));
  if (!pair) error->all(FLERR, "fix ferronn/field needs pair_style ferronn (its neighbour list and elements)");
  if (born.r_max > pair->model.r_max + 1e-12)
    error->all(FLERR, "fix ferronn/field: the Born model's cutoff {} Angstrom exceeds the energy model's {}: the "
               "shared neighbour list would miss edges", born.r_max, pair->model.r_max);
  std::vector<int64_t> species;
  std::string why = ferronn::map_types(born, pair->type_elements, species);
  if (!why.empty()) error->all(FLERR, "fix ferronn/field: {}", why);
  born_species = species;
  if (torch::Device(pair->device) != born.device) {
    born.device = torch::Device(pair->device);
    born.module.to(born.device);
  }
  // The Born model's receptive field may reach farther than the energy model's ghost shell.
  const double need = (pair->all_local ? born.r_max : born.num_interactions * born.r_max) + neighbor->skin;
  if (comm->cutghostuser < need) comm->cutghostuser = need;
  for (int k = 0; kind == VARIABLE && k < 3; k++) {
    varindex[k] = input->variable->find(varname[k].c_str());
    if (varindex[k] < 0) error->all(FLERR, "fix ferronn/field: variable {} does not exist", varname[k]);
    if (!input->variable->equalstyle(varindex[k]))
      error->all(FLERR, "fix ferronn/field: variable {} must be equal-style", varname[k]);
  }
}

void FixFerronnField::setup(int vflag)
{
  post_force(vflag);
}

void FixFerronnField::evaluate_field()
{
  const double t = update->atime + (update->ntimestep - update->atimestep) * update->dt;
  if (kind == CONSTANT) {
    for (int k = 0; k < 3; k++) field[k] = amplitude[k];
  } else if (kind == SINE) {
    const double s = sin(2.0 * M_PI * t / period + phase);
    for (int k = 0; k < 3; k++) field[k] = amplitude[k] * s;
  } else {
    modify->clearstep_compute();
    for (int k = 0; k < 3; k++) field[k] = input->variable->compute_equal(varindex[k]);
    modify->addstep_compute(update->ntimestep + 1);
  }
}

void FixFerronnField::post_force(int /*vflag*/)
{
  evaluate_field();
  double **x = atom->x, **f = atom->f;
  imageint *image = atom->image;
  const int nlocal = atom->nlocal;
  const auto on_device = device_float64();

  // Z* before the sum rule for local atoms (the graph reaches ghosts only for the receptive field). It stays on
  // the model's device: only its 9-number local sum, the field forces and the 3-number dipole step come back.
  torch::Tensor z;
  double sum[9] = {0}, total[9];
  if (nlocal > 0) {
    pair->build(graph, born.r_max, born.num_interactions);    // the pair style's mode and neighbour list
    torch::Tensor positions, shifts;
    auto inputs = ferronn::graph_inputs(born, graph, x, atom->type, born_species, false, positions, shifts);
    try {
      torch::NoGradGuard no_grad;
      z = born.module.forward(inputs).toTensor().narrow(0, 0, nlocal).to(torch::kFloat64).reshape({nlocal, 3, 3});
    } catch (const std::exception &e) {
      std::string what = e.what();
      error->one(FLERR, "fix ferronn/field: the Born model failed on {} atoms: {}", graph.atoms.size(),
                 what.substr(0, what.find('\n')));
    }
    auto local_sum = z.sum(0).reshape({9}).to(torch::kCPU).contiguous();
    std::memcpy(sum, local_sum.data_ptr<double>(), sizeof(sum));
  }
  MPI_Allreduce(sum, total, 9, MPI_DOUBLE, MPI_SUM, world);
  const double natoms = (double) atom->natoms;

  double dm[3] = {0, 0, 0}, dm_all[3];
  if (nlocal > 0) {
    for (double &t : total) t /= natoms;
    z = z - torch::from_blob(total, {1, 3, 3}, torch::kFloat64).to(on_device);    // sum_k Z*_k = 0
    auto e = torch::from_blob(field, {3}, torch::kFloat64).to(on_device);
    auto force = torch::einsum("a,iab->ib", {e, z}).to(torch::kCPU).contiguous();    // F_b = sum_a E_a Z*[a][b]
    const double *fe = force.data_ptr<double>();
    std::vector<double> unwrapped(3 * (size_t) nlocal);
    for (int i = 0; i < nlocal; i++) {
      for (int b = 0; b < 3; b++) f[i][b] += fe[3 * i + b];
      domain->unmap(x[i], image[i], &unwrapped[3 * i]);
    }
    auto r = torch::from_blob(unwrapped.data(), {nlocal, 3}, torch::kFloat64).to(on_device, false, true);
    if (have_previous) {    // trapezoid with the Z* used in this step's and the last step's forces
      device_previous(nlocal);
      auto step = torch::einsum("iab,ib->a", {0.5 * (zprev_dev + z), r - xprev_dev}).to(torch::kCPU).contiguous();
      std::memcpy(dm, step.data_ptr<double>(), sizeof(dm));
    }
    zprev_dev = z;
    xprev_dev = r;
  } else {
    zprev_dev = torch::Tensor();
    xprev_dev = torch::Tensor();
  }
  device_current = true;
  host_current = false;
  MPI_Allreduce(dm, dm_all, 3, MPI_DOUBLE, MPI_SUM, world);
  if (have_previous)
    for (int a = 0; a < 3; a++) dipole[a] += dm_all[a];
  have_previous = 1;
}

/* ---- Z*(t-dt) and r(t-dt): on the model's device between reneighbourings, in the per-atom arrays for LAMMPS ----
   The device tensors are the current copy after every force evaluation. LAMMPS touches the per-atom arrays only
   when atoms migrate, are sorted or go to a restart file (every hook below); each hook first brings the arrays up
   to date (one download per reneighbouring), and one that changes them marks the device copy stale, so the next
   evaluation uploads them. */

torch::TensorOptions FixFerronnField::device_float64() const
{
  return torch::TensorOptions().dtype(torch::kFloat64).device(born.device);
}

void FixFerronnField::sync_host()
{
  if (host_current) return;
  host_current = true;
  if (!zprev_dev.defined()) return;
  auto z = zprev_dev.reshape({-1, 9}).to(torch::kCPU).contiguous();
  auto r = xprev_dev.to(torch::kCPU).contiguous();
  const int n = (int) z.size(0);
  const double *zd = z.data_ptr<double>(), *rd = r.data_ptr<double>();
  for (int i = 0; i < n; i++) {
    std::memcpy(zprev[i], zd + 9 * i, 9 * sizeof(double));
    std::memcpy(xprev[i], rd + 3 * i, 3 * sizeof(double));
  }
}

void FixFerronnField::device_previous(int nlocal)
{
  if (device_current && zprev_dev.defined() && zprev_dev.size(0) == nlocal) return;
  // Stale after a hook (which synced the host first), or atoms added without one (create_atoms): either way
  // the per-atom arrays are brought up to date, then uploaded.
  sync_host();
  const auto on_device = device_float64();
  auto z = torch::empty({nlocal, 3, 3}, torch::kFloat64), r = torch::empty({nlocal, 3}, torch::kFloat64);
  double *zd = z.data_ptr<double>(), *rd = r.data_ptr<double>();
  for (int i = 0; i < nlocal; i++) {
    std::memcpy(zd + 9 * i, zprev[i], 9 * sizeof(double));
    std::memcpy(rd + 3 * i, xprev[i], 3 * sizeof(double));
  }
  zprev_dev = z.to(on_device);
  xprev_dev = r.to(on_device);
  device_current = true;
}

double FixFerronnField::compute_scalar()
{
  return -(dipole[0] * field[0] + dipole[1] * field[1] + dipole[2] * field[2]);
}

void FixFerronnField::fill_vector()
{
  // H = K + U0 - M.E with K from the current velocities and U0 from pair ferronn's last evaluation.
  double **v = atom->v;
  double local[2] = {0.0, pair ? pair->local_energy : 0.0}, all[2];
  for (int i = 0; i < atom->nlocal; i++) {
    const double m = atom->rmass ? atom->rmass[i] : atom->mass[atom->type[i]];
    local[0] += 0.5 * m * (v[i][0] * v[i][0] + v[i][1] * v[i][1] + v[i][2] * v[i][2]);
  }
  local[0] *= force->mvv2e;
  MPI_Allreduce(local, all, 2, MPI_DOUBLE, MPI_SUM, world);
  const double volume = domain->xprd * domain->yprd * domain->zprd;
  for (int a = 0; a < 3; a++) {
    vector_cache[a] = dipole[a];
    vector_cache[3 + a] = dipole[a] / volume * E_PER_A2_TO_UC_PER_CM2;
    vector_cache[6 + a] = field[a];
  }
  vector_cache[9] = all[0] + all[1] + compute_scalar();
  vector_step = update->ntimestep;
}

double FixFerronnField::compute_vector(int n)
{
  if (vector_step != update->ntimestep || n == 0) fill_vector();    // collective: thermo calls it on every rank
  return vector_cache[n];
}

/* ---- restart: M and the "previous step is filled" flag globally, Z*(t-dt) and r(t-dt) per atom ---- */

void FixFerronnField::write_restart(FILE *fp)
{
  double list[4] = {dipole[0], dipole[1], dipole[2], (double) have_previous};
  if (comm->me == 0) {
    int size = 4 * sizeof(double);
    fwrite(&size, sizeof(int), 1, fp);
    fwrite(list, sizeof(double), 4, fp);
  }
}

void FixFerronnField::restart(char *buf)
{
  auto list = (double *) buf;
  for (int a = 0; a < 3; a++) dipole[a] = list[a];
  have_previous = (int) list[3];
}

void FixFerronnField::grow_arrays(int nmax)
{
  // memory->grow keeps the rows it had: no sync needed (the device copy, if current, stays current).
  memory->grow(zprev, nmax, 9, "ferronn/field:zprev");
  memory->grow(xprev, nmax, 3, "ferronn/field:xprev");
}

void FixFerronnField::copy_arrays(int i, int j, int /*delflag*/)
{
  sync_host();
  device_current = false;
  for (int c = 0; c < 9; c++) zprev[j][c] = zprev[i][c];
  for (int c = 0; c < 3; c++) xprev[j][c] = xprev[i][c];
}

int FixFerronnField::pack_exchange(int i, double *buf)
{
  sync_host();
  for (int c = 0; c < 9; c++) buf[c] = zprev[i][c];
  for (int c = 0; c < 3; c++) buf[9 + c] = xprev[i][c];
  return PERATOM;
}

int FixFerronnField::unpack_exchange(int nlocal, double *buf)
{
  sync_host();
  device_current = false;
  for (int c = 0; c < 9; c++) zprev[nlocal][c] = buf[c];
  for (int c = 0; c < 3; c++) xprev[nlocal][c] = buf[9 + c];
  return PERATOM;
}

int FixFerronnField::pack_restart(int i, double *buf)
{
  sync_host();
  buf[0] = PERATOM + 1;    // the count includes itself (LAMMPS' per-atom restart layout)
  for (int c = 0; c < 9; c++) buf[1 + c] = zprev[i][c];
  for (int c = 0; c < 3; c++) buf[10 + c] = xprev[i][c];
  return PERATOM + 1;
}

void FixFerronnField::unpack_restart(int nlocal, int nth)
{
  sync_host();
  device_current = false;
  double **extra = atom->extra;
  int m = 0;
  for (int i = 0; i < nth; i++) m += static_cast<int>(extra[nlocal][m]);    // skip earlier fixes' values
  m++;
  for (int c = 0; c < 9; c++) zprev[nlocal][c] = extra[nlocal][m++];
  for (int c = 0; c < 3; c++) xprev[nlocal][c] = extra[nlocal][m++];
}

int FixFerronnField::size_restart(int /*nlocal*/)
{
  return PERATOM + 1;
}

int FixFerronnField::maxsize_restart()
{
  return PERATOM + 1;
}

double FixFerronnField::memory_usage()
{
  return (double) atom->nmax * PERATOM * sizeof(double);
}
