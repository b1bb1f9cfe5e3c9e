"""``python -m ffaccel.dse``: design-space exploration on Optuna.

    python -m ffaccel.dse --space FILE [--store PATH | --storage URL] [--workers N] [--trials T] [--json]
                          [--out DIR]

Storage: by default an SQLite file (``runs/dse/<space>.db``); ``--storage
postgresql://...`` shares one study between workers on several machines. Every finished
evaluation is committed by Optuna as it completes, so a sweep killed at any moment
(SIGKILL included) resumes where it was: a trial that was running when its worker died is
failed by Optuna's heartbeat check and its design is evaluated again; a design with a
completed trial is never evaluated again (grid: only designs without a completed trial
are enqueued; NSGA-II: a design sampled twice reuses the stored metrics).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import sys
import time
from pathlib import Path
from typing import Sequence

from ..cli import path_arg, FFAccelError, make_parser, run_main, strict_int
from .pareto import OUTPUT_BYTES, output_names, pareto, write_outputs
from .space import load_space
from ..fsutil import OutputError, check_writable, foreign_files
from .storage import NEW_STORE_BYTES, check_workers, normalise_url, sqlite_path, storage_label
from .study import (_study, collect, enqueue_grid, fail_dead_local_trials, fail_stale_trials, networks, rung_points,
                    running, spawned_worker, todo_waiting, worker)

# collect, pareto: re-exported from the library (ffaccel.dse.study, ffaccel.dse.pareto)
__all__ = ["main", "collect", "pareto"]

PROG = "ffaccel.dse"


def _run_workers(space_path: str, url: str, trials, n: int, bar) -> None:
    """``n`` spawned worker processes; they die with this process (each watches its parent)
    and are terminated when it stops early (an exception, SIGINT, SIGTERM)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=spawned_worker, args=(space_path, url, trials, i, q, os.getpid()))
             for i in range(n)]
    errors: list[str] = []

    def drain(timeout):
        try:
            item = q.get(timeout=timeout)
        except queue.Empty:
            return False
        if isinstance(item, tuple):
            errors.append(item[1])
        else:
            bar.update(1)
        return True
    try:
        for pr in procs:
            pr.start()
        while any(pr.is_alive() for pr in procs):
            drain(0.5)
        while drain(0.1):                     # what the last workers put before they ended
            pass
        for pr in procs:
            pr.join()
    finally:                                  # (run_main turns SIGTERM into an interrupt)
        for pr in procs:
            if pr.is_alive():
                pr.terminate()
        for pr in procs:
            pr.join(timeout=10)
            if pr.is_alive():
                pr.kill()
    bad = [pr.exitcode for pr in procs if pr.exitcode]
    if errors:
        raise FFAccelError(errors[0] + (f" ({len(bad)} workers stopped)" if len(bad) > 1 else ""))
    if bad:
        raise FFAccelError(f"{len(bad)} worker(s) failed (exit codes {bad}); finished evaluations are kept")


def _sweep(args, space, url: str, study, todo, trials, desc: str) -> None:
    """Run this machine's workers on the study until the grid's waiting designs are taken
    (``todo`` of them) or NSGA-II's ``trials`` per worker are done."""
    from tqdm import tqdm
    total = todo if space.kind == "grid" else (trials * args.workers)
    bar = tqdm(total=total, disable=args.no_progress or not total, desc=desc, unit="design")
    # no more workers than designs waiting (grid; a re-run with nothing to do starts none)
    workers = min(args.workers, max(todo_waiting(study), 1)) if space.kind == "grid" else args.workers
    if workers == 1:
        class _Q:
            def put(self, _):
                bar.update(1)
        worker(args.space, url, trials, 0, _Q())
    else:
        _run_workers(args.space, url, trials, workers, bar)
    bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--space", type=path_arg, required=True, help="space file (TOML)")
    p.add_argument("--store", type=path_arg, help="SQLite file of the study (default runs/dse/<space>.db)")
    p.add_argument("--storage", type=path_arg, help="Optuna storage URL, e.g. postgresql://user@host/db (distributed)")
    p.add_argument("--workers", type=strict_int, default=1,
                   help="worker processes on this machine (at most twice its cores)")
    p.add_argument("--trials", type=strict_int, default=None, help="nsga2: trials per worker (default: the space's)")
    p.add_argument("--out", type=path_arg, default=None, help="folder for CSV and PNG (default runs/dse/<space>)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    space = load_space(args.space)
    check_workers(args.workers)
    if args.trials is not None and args.trials < 1:
        raise FFAccelError(f"--trials={args.trials} out of range (allowed: >= 1)")
    if args.trials is not None and space.kind == "grid":
        raise FFAccelError("--trials applies to kind = \"nsga2\" spaces (a grid evaluates every design)")
    if args.store is not None and args.storage is not None:
        raise FFAccelError("give --store or --storage, not both")
    out = Path(args.out or f"runs/dse/{space.name}")
    # a SQLite --storage URL names a file like --store: the same checks
    if args.storage is not None:
        url = normalise_url(args.storage)
        store_file = sqlite_path(url)
    else:
        store_file = Path(args.store or f"runs/dse/{space.name}.db")
        url = f"sqlite:///{store_file.resolve()}"
    store_flag = "--storage" if args.storage is not None else "--store"
    for flag, path, folder in (("--out", out, True), (store_flag, store_file, False)):
        if path is None:                      # a server's URL: checked when it is opened
            continue
        need = OUTPUT_BYTES if folder else (0 if path.exists() else NEW_STORE_BYTES)
        why = check_writable(path, folder=folder, need=need)
        if folder and not why:
            why = foreign_files(path, output_names(space))
        if why:
            raise FFAccelError(f"{flag} {str(path)!r} cannot be written: {why}")
    from .evaluate import check_workload
    check_workload(space)
    if store_file is not None:
        store_file.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        study = _study(space, url, create=True)
    except FFAccelError:
        raise
    except Exception as e:  # a bad URL, an unreachable server
        raise FFAccelError(f"storage {url!r} cannot be opened: {str(e).splitlines()[0]}") from None
    fail_dead_local_trials(study, local_store=url.startswith("sqlite"))
    fail_stale_trials(study)
    before = len(collect(space, study))
    rungs = []
    if space.fidelity:
        # successive halving: each rung's designs are evaluated (by every machine's
        # workers) before the next rung is chosen from them
        prev: list[dict] = []
        for r, epochs in enumerate(space.fidelity):
            t_r = time.perf_counter()
            points = rung_points(space, r, prev)
            todo = enqueue_grid(space, study, url, points)
            _sweep(args, space, url, study, todo, None, f"DSE rung {r + 1} ({epochs} epochs)")
            while running(study, points, space):           # other machines' trials of this rung
                time.sleep(2.0)
                fail_stale_trials(study)
            prev = collect(space, study, epochs)
            rungs.append({"epochs": epochs, "designs": len(prev), "queued_now": todo,
                          "networks": networks(space, prev), "seconds": round(time.perf_counter() - t_r, 1)})
    else:
        todo = enqueue_grid(space, study, url) if space.kind == "grid" else None
        trials = args.trials or space.trials if space.kind == "nsga2" else None
        _sweep(args, space, url, study, todo, trials, "DSE")
    rows = collect(space, study)
    front = pareto(rows, space.objectives)
    try:
        files = write_outputs(space, rows, front, out) if rows else []
    except OutputError as e:           # the store holds every design: a re-run writes them
        raise FFAccelError(f"--out {e} (the store {storage_label(url)} holds the results; "
                           "run the same command again to write them)") from None
    dt = time.perf_counter() - t0
    new = len(rows) - before
    summary = {"points": len(rows), "new": new, "seconds": round(dt, 2), **({"rungs": rungs} if rungs else {}),
               "evaluations_per_minute": round(new / dt * 60, 2) if new else 0.0,
               "pareto": front, "files": files, "storage": storage_label(url)}
    if args.json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        print(f"{space.name}: {len(rows)} designs in the store, {new} new in {dt:.1f} s; "
              f"Pareto front {len(front)} designs -> {', '.join(files)}")
        for r in front:
            print("  " + ", ".join(f"{k}={r[k]}" for k in sorted(space.axes)) +
                  f" | acc {r['accuracy'] * 100:.1f}% E {r['energy_pj'] / 1e6:.3f} uJ "
                  f"lat {r['latency_us']:.1f} us area {r['area_cells']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
