"""Where aios keeps its state: one SQLite file in a state directory.

The directory comes from `--state-dir`, else the `AIOS_STATE_DIR` environment variable, else
`./state`. The file holds the decision journal and (as the runtime grows) trades, positions,
stage history and the model registry: nothing to start, one file to back up.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_ENV = "AIOS_STATE_DIR"
DEFAULT_STATE_DIR = "state"
DATABASE_NAME = "aios.sqlite"


def state_dir(option: Path | None = None) -> Path:
    if option is not None:
        return option
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)


def database_path(option: Path | None = None) -> Path:
    return state_dir(option) / DATABASE_NAME
