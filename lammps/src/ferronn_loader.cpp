/* ferronnplugin.so, the file `plugin load` opens: a loader with no libtorch in it. It opens the implementation
   (libferronn_lammps.so, beside it) with RTLD_DEEPBIND and hands it LAMMPS' registration call.

   Why: the lmp process has liblammps loaded before any plugin, and liblammps exports its bundled reference
   BLAS (dgemm_, dgemv_, daxpy_, ... in double precision). A plugin linked to libtorch directly makes
   libtorch_cpu's own BLAS calls bind to those first (the process' global scope precedes the library's), so every
   float64 matrix product of the models ran through a textbook triple loop: the 1080-atom energy + forces took
   0.90 s instead of 0.70 s (1 thread; the same slowdown appears in Python with LD_PRELOAD=liblammps.so).
   RTLD_DEEPBIND puts libtorch's own symbols ahead of the global scope for the libraries loaded here, so the
   models get torch's BLAS; LAMMPS and its own users of those routines keep theirs. The implementation is
   linked without liblammps and libmpi: their symbols come from the process, as for any plugin. */

#include <dlfcn.h>

#include <cstdio>
#include <string>

extern "C" {
typedef void (*ferronn_register_fn)(void *, void *, void *);
void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  Dl_info self;
  std::string dir = ".";
  if (dladdr((void *) &lammpsplugin_init, &self) && self.dli_fname) {
    const std::string file = self.dli_fname;
    const auto slash = file.find_last_of('/');
    if (slash != std::string::npos) dir = file.substr(0, slash);
  }
  const std::string path = dir + "/libferronn_lammps.so";
  void *impl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (!impl) {    // LAMMPS then reports that no styles were registered; say why first
    fprintf(stderr, "ferronn plugin: cannot open %s: %s (rebuild with bash lammps/build.sh)\n", path.c_str(),
            dlerror());
    return;
  }
  auto reg = (ferronn_register_fn) dlsym(impl, "ferronn_register");
  if (!reg) {
    fprintf(stderr, "ferronn plugin: %s has no ferronn_register: rebuild with bash lammps/build.sh\n", path.c_str());
    return;
  }
  reg(lmp, handle, regfunc);
}
