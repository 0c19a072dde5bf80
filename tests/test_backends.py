"""Optional compute backends: cuEquivariance kernels (CPU fallback checked here, GPU via the device tool) and the
torch.compile settings (compiling itself takes minutes on 2 cores: benchmarks/compile_check.py)."""

from __future__ import annotations

import ase.io
import pytest
import torch

from ferronn import keys as K
from ferronn.data.datamodule import default_data_path
from ferronn.errors import ConfigError
from ferronn.md.engine import Simulation
from helpers import distorted, make_batch
from helpers import frame_atoms as _atoms
from helpers import md_config as _config


def test_cueq_energy_model_gives_the_e3nn_numbers(model, qe_frames, species, rng, tmp_path):
    pytest.importorskip("cuequivariance_torch", reason="cuEquivariance not installed (pip install 'ferronn[cueq]')")
    from ferronn.models.cueq import to_cueq

    fast = to_cueq(model)
    assert torch.get_default_dtype() == torch.float32  # the converter's global side effect is undone
    batch = make_batch([distorted(qe_frames[i], rng) for i in (2, 6)], species, model.r_max)
    a, b = fast(batch, compute_stress=True), model(batch, compute_stress=True)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        torch.testing.assert_close(a[key].detach(), b[key].detach(), rtol=0, atol=1e-10)
    # The MD setting: same trajectory as the e3nn model.
    runs = []
    for cueq in (False, True):
        sim = Simulation(_config(steps=3, cueq=cueq, seed=2, out=str(tmp_path / str(cueq))), model, None,
                         _atoms(qe_frames[1]))
        sim.run(progress=False)
        runs.append(sim.state.positions)
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-10)


def test_compile_settings_refuse_what_cannot_be_compiled(model, tmp_path):
    """torch.compile works on plain checkpoints for MD, and in training only without a force/stress loss
    (compiling itself takes minutes on 2 cores: benchmarks/compile_check.py checks the numbers)."""
    from ferronn.models.committee import EnergyCommittee
    from ferronn.train.config import TrainConfig
    from ferronn.train.run import compile_for_training

    atoms = ase.io.read(default_data_path(), 1)
    with pytest.raises(ConfigError, match="'compile' works on ferronn checkpoints, not on a EnergyCommittee"):
        Simulation(_config(compile=True, out=str(tmp_path)), EnergyCommittee([model]), None, atoms)
    with pytest.raises(ConfigError, match="needs a double backward"):
        compile_for_training({"energy": model, "born": None}, TrainConfig(compile=True))

    with pytest.raises(ConfigError, match="false when cueq is true"):
        _config(compile=True, cueq=True).validate()
