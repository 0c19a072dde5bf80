"""Profiles of the per-layer local polarization (``layers.csv`` of an MD run with ``polarization_layers``): P per
layer before and after a field, e.g. the 180° domain walls a slab field leaves (docs/examples/domain-wall.md).

    python -m ferronn.study.layers OUT.png LABEL=runs/x/layers.csv@STEP [LABEL=...@STEP ...] [--component z]

STEP may be 'first' or 'last'. Polarization in μC/cm², layers at their fractional position along the axis.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, cli_exit_code
from .outputs import figure, read_csv, save_figure


def profile(csv_path: str, step="last", replica: int = 0, component: str = "z") -> Tuple[int, np.ndarray, np.ndarray]:
    """(step, layer positions s, P_component per layer μC/cm²) of one logged step of ``layers.csv``."""
    cols = read_csv(csv_path)
    if not cols:
        raise ConfigError(f"'{csv_path}': no rows (run MD with polarization_layers set)")
    steps = np.array(cols["step"], dtype=int)
    chosen = {"first": steps.min(), "last": steps.max()}.get(step, None)
    chosen = int(step) if chosen is None else int(chosen)
    sel = (steps == chosen) & (np.array(cols["replica"], dtype=int) == replica)
    if not sel.any():
        raise ConfigError(f"'{csv_path}': no rows for step {chosen}, replica {replica} (steps {steps.min()}..{steps.max()})")
    order = np.argsort(np.array(cols["s_frac"])[sel], kind="stable")  # along the axis
    s = np.array(cols["s_frac"])[sel][order]
    p = np.array(cols[f"P{component}_uC_cm2"])[sel][order]
    return chosen, s, p


def plot_profiles(curves: Sequence[Tuple[str, str, object]], component: str = "z", slab=None):
    """P_component per layer for each (label, layers.csv, step); ``slab`` (lo, hi) shades the field's slab."""
    fig, axes = figure()
    ax = axes[0][0]
    if slab is not None:
        ax.axvspan(*slab, color="0.9", label="field slab")
    for k, (label, path, step) in enumerate(curves):
        chosen, s, p = profile(path, step, component=component)
        ax.plot(s, p, marker="o", color=f"C{k}", label=f"{label} (step {chosen})")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_xlabel("layer position (fractional coordinate)")
    ax.set_ylabel(f"local P_{component} per layer (μC/cm²)")
    ax.legend(fontsize=7)
    return fig


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferronn.study.layers", description=__doc__)
    parser.add_argument("png")
    parser.add_argument("curves", nargs="+", metavar="LABEL=CSV@STEP")
    parser.add_argument("--component", default="z", choices=("x", "y", "z"))
    parser.add_argument("--slab", nargs=2, type=float, metavar=("LO", "HI"))

    def run(args):
        curves = []
        for spec in args.curves:
            label, _, rest = spec.partition("=")
            path, _, step = rest.partition("@")
            if not path:
                raise ConfigError(f"curve '{spec}': expected LABEL=path/to/layers.csv@STEP")
            curves.append((label, path, step or "last"))
        save_figure(plot_profiles(curves, args.component, args.slab), args.png)

    return cli_exit_code(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
