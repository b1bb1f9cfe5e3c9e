"""Optuna study plumbing shared by the DSE command and its worker processes (importable,
so ``spawn`` workers can find it)."""

from __future__ import annotations

import json
import math
import os

from ..errors import FFAccelError
from ..fsutil import pid_alive
from .optuna_compat import check_version, fail_stale_trials, fail_trial, study_storage
from .space import FIDELITY_KEY, Space, load_space
from .storage import open_storage, storage_label

__all__ = ["collect", "enqueue_grid", "fail_dead_local_trials", "fail_stale_trials", "networks", "rung_points", "running",
           "todo_waiting", "worker"]


def _study(space: Space, url: str, create: bool):
    import warnings

    import optuna
    check_version()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    dirs = ["maximize" if o.endswith(":max") else "minimize" for o in space.objectives]
    sampler = optuna.samplers.NSGAIISampler(seed=space.recipe.seed) if space.kind == "nsga2" else None
    name = f"ffaccel-{space.name}"
    if create:
        return optuna.create_study(study_name=name, storage=open_storage(url), directions=dirs, sampler=sampler,
                                   load_if_exists=True)
    return optuna.load_study(study_name=name, storage=open_storage(url), sampler=sampler)


def _completed(study) -> dict:
    """point_key -> trial, for completed trials that ran their own evaluation."""
    import optuna
    out = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        k = t.user_attrs.get("point_key")
        if k and not t.user_attrs.get("duplicate_of") and k not in out:
            out[k] = t
    return out


def _objective_values(space: Space, metrics: dict) -> list[float]:
    return [metrics[o.split(":")[0]] for o in space.objectives]


def _suggest(space: Space, trial) -> dict:
    point = {k: trial.suggest_categorical(k, v) for k, v in sorted(space.axes.items())}
    if space.fidelity:
        point[FIDELITY_KEY] = trial.suggest_categorical(FIDELITY_KEY, list(space.fidelity))
    return point


def worker(space_path: str, url: str, trials: int | None, wid: int, q=None, parent_pid: int | None = None) -> int:
    """One worker process: evaluate designs of the shared study until none are left (grid)
    or ``trials`` are done (NSGA-II). Runs inside ``study.optimize`` so that Optuna's
    heartbeat marks the trial of a dead worker as failed. ``parent_pid`` (a spawned worker
    process): exit as soon as that process is gone."""
    import optuna
    from .evaluate import evaluate
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    space = load_space(space_path)
    study = _study(space, url, create=False)
    counts = {"new": 0}

    def objective(trial):
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")   # first: who holds it
        if space.kind == "grid" and trial.user_attrs.get("point_key") is None:
            # nothing was waiting: another worker took the last design
            trial.study.stop()
            raise optuna.TrialPruned("grid exhausted")
        point = _suggest(space, trial)
        key = space.point_key(point)
        trial.set_user_attr("point_key", key)
        prev = _completed(trial.study).get(key)
        if prev is not None and prev.number != trial.number:
            for m in space.metrics:
                trial.set_user_attr(m, prev.user_attrs[m])
            trial.set_user_attr("duplicate_of", prev.number)
            return prev.values
        metrics = evaluate(space, point)
        for m, v in metrics.items():
            trial.set_user_attr(m, v)
        counts["new"] += 1
        return _objective_values(space, metrics)

    def after(study, frozen):
        if q is not None and frozen.state == optuna.trial.TrialState.COMPLETE:
            q.put(1)
        if space.kind == "grid" and not study.get_trials(deepcopy=False,
                                                         states=(optuna.trial.TrialState.WAITING,)):
            study.stop()

    if space.kind == "grid" and not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        return 0
    try:
        study.optimize(objective, n_trials=trials if space.kind == "nsga2" else None, callbacks=[after],
                       catch=())
    except Exception as e:
        why = storage_failure(e)
        if why is None:
            raise
        raise FFAccelError(f"storage {storage_label(url)!r} failed during the sweep ({why}); the designs "
                           "finished are kept: run the same command again to go on") from None
    return counts["new"]


def storage_failure(e: BaseException) -> str | None:
    """The database's own message when ``e`` (or an exception it was raised from or while
    handling) is a storage failure (disk full, connection lost, timeout), else None."""
    from sqlalchemy.exc import DBAPIError
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DBAPIError):
            return str(e.orig).strip().splitlines()[0] if e.orig is not None else type(e).__name__
        e = e.__cause__ or e.__context__
    return None


def spawned_worker(space_path: str, url: str, trials: int | None, wid: int, q, parent_pid: int) -> None:
    """The target of a worker process: a user-facing failure goes to the parent as one
    message on the queue (the parent prints it as its one error line), exit status 2."""
    import sys
    try:
        worker(space_path, url, trials, wid, q, parent_pid)
    except FFAccelError as e:
        q.put(("error", str(e)))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _die_with_parent(parent: int) -> None:
    """A worker process exits as soon as its parent ``parent`` is gone (killed or
    interrupted), instead of finishing the sweep re-parented to init. The parent's pid comes
    from the parent itself: one read here could already be init's if it died during spawn."""
    import threading
    import time
    if os.getppid() != parent:
        os._exit(3)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)
    threading.Thread(target=watch, daemon=True, name="ffaccel-parent-watch").start()


def fail_dead_local_trials(study, local_store: bool) -> int:
    """Fail the RUNNING trials whose worker is known to be dead, now, instead of waiting for
    the heartbeat's grace period: a process of this machine that no longer exists (killed)
    or, with a local SQLite store (one machine, one sweep at a time), a trial that a killed
    worker had taken before it could even record who it was."""
    import optuna
    host, n = os.uname().nodename, 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        who = t.user_attrs.get("worker", "")
        h, _, pid = who.partition(":")
        dead = (h == host and pid.isdigit() and not pid_alive(int(pid))) or (local_store and not who)
        if dead:
            fail_trial(study, t)
            n += 1
    return n


def enqueue_grid(space: Space, study, url: str, points: list[dict] | None = None) -> int:
    """Enqueue every grid design (or every one of ``points``) that has neither a completed
    nor a waiting/running trial, under the store's sweep lock (two sweeps started at once
    enqueue each design once)."""
    from .storage import sweep_lock
    with sweep_lock(study_storage(study), url, study.study_name):
        return _enqueue_grid(space, study, points)


def rung_points(space: Space, rung: int, previous: list[dict]) -> list[dict]:
    """Multi-fidelity (successive halving): the points of ``rung``. Rung 0 is every grid
    design at the first epoch budget; rung r + 1 takes the best ``keep`` fraction of rung
    r's evaluated designs (``previous``, rows of :func:`collect`): whole non-dominated fronts
    in order, the last front cut in point-key order (the same promotion on every machine)."""
    from .pareto import pareto
    e = space.fidelity[rung]
    if rung == 0:
        return [{**p, FIDELITY_KEY: e} for p in space.grid()]
    want = max(1, math.ceil(len(previous) * space.keep))
    left, chosen = list(previous), []
    while left and len(chosen) < want:
        front = sorted(pareto(left, space.objectives), key=lambda r: r["point_key"])
        chosen += front[: want - len(chosen)]
        keys = {r["point_key"] for r in front}
        left = [r for r in left if r["point_key"] not in keys]
    return [{**space.point_of(r), FIDELITY_KEY: e} for r in chosen]


def networks(space: Space, rows: list[dict]) -> int:
    """Networks the designs of ``rows`` train (one per shape and mode, and per weight width
    when the recipe fine-tunes for it)."""
    from ..config import NETWORK_FIELDS
    seen = set()
    for r in rows:
        point = space.point_of(r)
        cfg, recipe = space.config(point), space.recipe_for(point)
        seen.add((tuple(getattr(cfg, k) for k in NETWORK_FIELDS if k not in ("inputs", "classes")),
                  cfg.wbits if recipe.qat_epochs else None, json.dumps(recipe.key(), sort_keys=True)))
    return len(seen)


def running(study, points: list[dict], space: Space) -> int:
    """Trials of ``points`` that are waiting or running (on any machine)."""
    import optuna
    keys = {space.point_key(p) for p in points}
    return sum(1 for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,
                                                                   optuna.trial.TrialState.RUNNING))
               if t.user_attrs.get("point_key") in keys)


def _enqueue_grid(space: Space, study, points: list[dict] | None = None) -> int:
    import optuna
    have = set(_completed(study))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,
                                                      optuna.trial.TrialState.RUNNING)):
        have.add(t.user_attrs.get("point_key"))
    n = 0
    for point in space.grid() if points is None else points:
        key = space.point_key(point)
        if key not in have:
            study.enqueue_trial(point, user_attrs={"point_key": key})
            have.add(key)
            n += 1
    return n


def todo_waiting(study) -> int:
    """Trials queued and not yet claimed."""
    import optuna
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def collect(space: Space, study, epochs: int | None = None) -> list[dict]:
    """One row (trial, design, metrics, point key, worker) per design of ``space`` with a
    completed evaluation in ``study``, in trial order; under multi-fidelity those of the
    rung of ``epochs`` (default the last)."""
    rows = []
    if space.fidelity and epochs is None:
        epochs = space.fidelity[-1]
    for t in _completed(study).values():
        if t.user_attrs["point_key"] != space.point_key(t.params):
            continue            # measured on another checkpoint, recipe or space text: stale
        if space.fidelity and t.params.get(FIDELITY_KEY) != epochs:
            continue
        rows.append({"trial": t.number, **t.params, **{m: t.user_attrs[m] for m in space.metrics},
                     "point_key": t.user_attrs["point_key"], "worker": t.user_attrs.get("worker", "")})
    rows.sort(key=lambda r: r["trial"])
    return rows
