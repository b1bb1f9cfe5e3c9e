"""Every use of Optuna that goes beyond its public API, in one place, for one major version.

ffaccel fails the RUNNING trials of a killed worker at once (``fail_trial``) instead of
waiting for the heartbeat's grace period; Optuna has no public call for "set this trial's
state", so this goes through the study's storage and the trial's private id. Those
internals may change between major versions: the adapter refuses, with one line, an
Optuna major version it was not written and tested for (update it, its tests in
tests/test_dse.py, and ``SUPPORTED_MAJOR`` together).
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache

from ..errors import FFAccelError

SUPPORTED_MAJOR = 5          # written and tested against optuna 5.0


def installed_version() -> str:
    return importlib.metadata.version("optuna")


def check_version(version: str | None = None) -> None:
    """Refuse an Optuna whose major version is not :data:`SUPPORTED_MAJOR`."""
    version = installed_version() if version is None else version
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise FFAccelError(f"optuna {version} is installed, but ffaccel.dse.optuna_compat was written for "
                           f"optuna {SUPPORTED_MAJOR}.x (pip install 'optuna>={SUPPORTED_MAJOR},<{SUPPORTED_MAJOR + 1}')")


@lru_cache(maxsize=1)
def _checked() -> None:
    check_version()


def fail_trial(study, trial) -> None:
    """Set a (RUNNING) trial of ``study`` to FAIL now. Private API: the study's storage and
    the frozen trial's storage id."""
    _checked()
    import optuna
    study_storage(study).set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def fail_stale_trials(study) -> None:
    """Fail the RUNNING trials whose heartbeat has stopped for longer than the grace period
    (Optuna's own check)."""
    _checked()
    from optuna.storages import fail_stale_trials as _fail_stale
    _fail_stale(study)


def rdb_engine(storage):
    """The SQLAlchemy engine of an RDBStorage, or of the RDBStorage a study wraps in its
    cache (attributes, not a documented API)."""
    _checked()
    storage = getattr(storage, "_backend", storage)
    engine = getattr(storage, "engine", None)
    if engine is None:
        raise FFAccelError("this optuna's RDBStorage has no engine attribute: update ffaccel.dse.optuna_compat")
    return engine


def study_storage(study):
    """The storage object behind a study (a private attribute)."""
    _checked()
    return study._storage
