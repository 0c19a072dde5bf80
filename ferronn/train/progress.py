"""Training progress without a terminal: one line per epoch instead of a redrawn bar.

When stdout is a file or a pipe (a batch job, CI, ``| tee``), tqdm's bar turns into thousands of carriage-return
fragments. ``EpochLines`` replaces it there and prints, once per epoch, the epoch and the metrics Lightning
shows in the bar (train_loss, val_loss, val_forces_rmse in meV/Å, val_born_mae in e).
"""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import ProgressBar


def wants_lines() -> bool:
    """True when stdout is not a terminal (the bar would not redraw in place)."""
    return not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty())


class EpochLines(ProgressBar):
    """A Lightning progress bar that prints one line at the end of each training epoch."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._start = time.perf_counter()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(metrics.items()))
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        print(f"epoch {trainer.current_epoch + 1}{epochs}: {values} ({time.perf_counter() - self._start:.0f} s)",
              flush=True)
