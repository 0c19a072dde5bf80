"""Quiet output: third-party messages a scientist cannot act on are dropped; ferronn's own are kept.

Dropped: Lightning's advertising tips ("💡 Tip: ... litlogger / litmodels"), and deprecation notices
(DeprecationWarning, FutureWarning) raised inside torch, Lightning, e3nn, mace and the other libraries ferronn
calls — they concern those libraries' own use of each other, not anything a ferronn user does. A deprecation
raised from ferronn's code still shows.
"""

from __future__ import annotations

import logging
import warnings

#: Loggers Lightning's rank-zero messages go through (lightning.fabric and lightning.pytorch each set one).
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                      "lightning_utilities.core.rank_zero")


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.getMessage()).lstrip().startswith("💡 Tip")


def silence_third_party() -> None:
    """Install the filters (idempotent; process-wide, as warnings and logging are)."""
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _not_a_tip not in logger.filters:
            logger.addFilter(_not_a_tip)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=r"ferronn(\.|$)")  # ours: keep
