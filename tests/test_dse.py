"""DSE: space validation, resumable after SIGKILL with no repeated evaluation, two workers on
a real PostgreSQL server with no duplicated evaluation, the Optuna adapter. The sweeps
measure the session's shared digits checkpoint (tests/conftest.py), so none of them trains."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ffaccel.dse.pareto import pareto
from ffaccel.dse.space import FPGA_METRICS, METRICS, load_space
from ffaccel.errors import FFAccelError

SPACE = """
[workload]
dataset = "digits"
layers = "2x16"
checkpoint = "{ckpt}"
limit = {limit}
toggle_samples = 1
[base]
mode = "mp"
[axes]
rows = [2, 5]
cols = [4, 8]
wbits = [4, 8]
k = {ks}
[strategy]
kind = "grid"
objectives = ["accuracy:max", "energy_pj:min", "latency_cycles:min", "area_cells:min"]
"""


def _space(tmp_path, ckpt, limit=60, ks="[0.5, 2.0]", name="s"):
    p = tmp_path / f"{name}.toml"
    p.write_text(SPACE.format(limit=limit, ks=ks, ckpt=ckpt))
    return p


def _dse(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ffaccel.dse", "--no-progress", *args], capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture()
def env(tmp_path_factory):
    e = dict(os.environ)
    e["FFACCEL_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return e


def _evaluated(db):
    c = sqlite3.connect(db)
    rows = c.execute("select t.trial_id, a.value_json from trials t join trial_user_attributes a "
                     "on a.trial_id = t.trial_id and a.key = 'point_key' where t.state = 'COMPLETE' and "
                     "t.trial_id not in (select trial_id from trial_user_attributes where key = 'duplicate_of')"
                     ).fetchall()
    c.close()
    return rows


@pytest.mark.fault
def test_space_validation(tmp_path):
    bad = {
        "[workload]\nlayers='2x8'\n[axes]\nrows=[2]\n": "needs a dataset",
        "[workload]\ndataset='digits'\n[axes]\n": "nothing to explore",
        "[workload]\ndataset='digits'\n[axes]\nrows=[0]\n": "rows=0",
        "[workload]\ndataset='digits'\n[axes]\nrows=[2]\n[strategy]\nkind='random'\n": "strategy kind",
        "[workload]\ndataset='digits'\nepochz=3\n[axes]\nrows=[2]\n": "unknown workload key",
        "[workload]\ndataset='digits'\nlr=0.1\n[axes]\nrows=[2]\n": "put it in the \\[recipe\\] section",
        "[workload]\ndataset='digits'\n[recipe]\nthetta=3\n[axes]\nrows=[2]\n": "unknown key 'thetta'",
        "[workload]\ndataset='digits'\n[recipe]\ntheta=-1\n[axes]\nrows=[2]\n": "theta=-1.0 out of range",
        "[workload]\ndataset='digits'\n[recipe]\nepochs='x'\n[axes]\nrows=[2]\n": "epochs='x' must be int",
        "[workload]\ndataset='digits'\n[axes]\nrows=[2]\n[strategy]\nobjectives=['speed:max']\n": "objective",
        "[workload\n": "does not parse",
        "[workload]\ndataset='digits'\n[axes]\nrows=[2]\n[strategy]\nobjectives=['fmax_mhz:max']\n":
            "needs an \\[fpga\\] section",
        "[workload]\ndataset='digits'\n[axes]\nrows=[2]\n[fpga]\ndevice='XC7A35T'\n": "not a device this flow knows",
        "[workload]\ndataset='digits'\n[axes]\nrows=[2]\n[fpga]\nspeed=6\n": "unknown fpga key",
        "[workload]\ndataset='digits'\n[axes]\nrows=[2]\n[fpga]\n": "needs device",
    }
    for text, frag in bad.items():
        (tmp_path / "b.toml").write_text(text)
        with pytest.raises(FFAccelError, match=frag):
            load_space(tmp_path / "b.toml")
    # shift augmentation is checked against the data set up front (flat rows; too large a move)
    flat = tmp_path / "flat.npz"
    np.savez(flat, x_train=np.zeros((20, 12), np.uint8), y_train=np.arange(20) % 2,
             x_test=np.zeros((5, 12), np.uint8), y_test=np.arange(5) % 2)
    for text, frag in {f"[workload]\ndataset='{flat}'\n[axes]\nrows=[2]\n'recipe.shift'=[0, 1]\n": "needs image data",
                       "[workload]\ndataset='digits'\n[recipe]\nshift=8\n[axes]\nrows=[2]\n": "smaller side"}.items():
        (tmp_path / "b.toml").write_text(text)
        with pytest.raises(FFAccelError, match=frag):
            load_space(tmp_path / "b.toml")
    sp = load_space(_space(tmp_path, "none.ckpt"))
    assert len(sp.grid()) == 16 and sp.config(sp.grid()[0]).rows == 2
    assert sp.metrics == METRICS and not sp.fpga
    # an [fpga] section adds the model's metrics (they may be objectives) and changes the keys
    (tmp_path / "f.toml").write_text(_space(tmp_path, "none.ckpt").read_text().replace(
        '"area_cells:min"]', '"fmax_mhz:max"]') + "[fpga]\ndevice = 'lfe5u-85f'\n")
    fp = load_space(tmp_path / "f.toml")
    assert fp.fpga == {"device": "LFE5U-85F"} and set(fp.metrics) - set(METRICS) == set(FPGA_METRICS)
    assert fp.point_key(fp.grid()[0]) != sp.point_key(sp.grid()[0])


def test_point_keys_follow_the_checkpoint_bytes(tmp_path):
    """A replaced checkpoint at the same path must not reuse the old designs' results."""
    import optuna
    from ffaccel.dse.study import collect
    ck = tmp_path / "net.ckpt"
    ck.write_bytes(b"first network")
    text = SPACE.format(limit=60, ks="[1.0]", ckpt=ck)
    (tmp_path / "c.toml").write_text(text)
    old = load_space(tmp_path / "c.toml")
    point = old.grid()[0]
    assert load_space(tmp_path / "c.toml").point_key(point) == old.point_key(point)
    ck.write_bytes(b"second network")
    new = load_space(tmp_path / "c.toml")
    assert new.point_key(point) != old.point_key(point)
    # results recorded under the old checkpoint are left out of the new report
    study = optuna.create_study(directions=["maximize"] * 1)
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in old.axes.items()}
    for sp in (old, new):
        attrs = {"point_key": sp.point_key(point), **{m: 1.0 for m in METRICS}}
        study.add_trial(optuna.trial.create_trial(params=point, distributions=dists, values=[1.0],
                                                  user_attrs=attrs))
    rows = collect(new, study)
    assert [r["point_key"] for r in rows] == [new.point_key(point)]


def test_point_keys_follow_the_metric_list(tmp_path, monkeypatch):
    """A store written before a metric existed re-evaluates instead of lacking it."""
    import ffaccel.dse.space as space_mod
    (tmp_path / "c.toml").write_text(SPACE.format(limit=60, ks="[1.0]", ckpt=tmp_path / "none.ckpt"))
    sp = load_space(tmp_path / "c.toml")
    point = sp.grid()[0]
    key = sp.point_key(point)
    monkeypatch.setattr(space_mod, "METRICS", tuple(m for m in METRICS if m != "balanced_accuracy"))
    assert load_space(tmp_path / "c.toml").point_key(point) != key


def test_pareto_front():
    rows = [{"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": 2, "b": 0}, {"a": 0, "b": 3}]
    front = pareto(rows, ("a:max", "b:min"))
    assert front == [{"a": 2, "b": 0}]
    assert len(pareto(rows, ("a:max", "b:max"))) == 2


def test_grid_run_and_rerun_evaluates_nothing_twice(tmp_path, env, cli, digits_ckpt):
    """The one plain subprocess run of python -m ffaccel.dse; the rerun runs in process."""
    sp, db = _space(tmp_path, digits_ckpt), tmp_path / "s.db"
    r = _dse("--space", str(sp), "--store", str(db), "--out", str(tmp_path / "out"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["points"] == 16 and out["new"] == 16 and out["pareto"]
    assert sorted(os.listdir(tmp_path / "out")) == ["s_pareto_energy_accuracy.png", "s_pareto_latency_area.png",
                                                    "s_points.csv"]
    assert not os.listdir(env["FFACCEL_CACHE"])          # measured the given checkpoint: no training
    r = cli("dse", "--no-progress", "--space", str(sp), "--store", str(db), "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["new"] == 0
    keys = [k for _, k in _evaluated(db)]
    assert len(keys) == len(set(keys)) == 16


@pytest.mark.fault
def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path, env, cli, digits_ckpt):
    sp, db = _space(tmp_path, digits_ckpt, limit=359, ks="[0.5, 1.0, 2.0]"), tmp_path / "k.db"
    proc = subprocess.Popen([sys.executable, "-m", "ffaccel.dse", "--no-progress", "--space", str(sp), "--store",
                             str(db), "--out", str(tmp_path / "o")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    done = []
    while time.time() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:
                done = _evaluated(db)
            except sqlite3.OperationalError:
                continue
            if len(done) >= 3:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= len(done) < 24, "the sweep should have been killed half-way"
    before = _evaluated(db)
    r = cli("dse", "--no-progress", "--space", str(sp), "--store", str(db), "--out", str(tmp_path / "o"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    after = _evaluated(db)
    assert out["points"] == 24 and out["new"] == 24 - len(before)
    assert set(before) <= set(after)                      # nothing finished was lost
    keys = [k for _, k in after]
    assert len(keys) == len(set(keys)) == 24              # nothing was evaluated twice


@pytest.fixture()
def postgres(tmp_path_factory):
    """A PostgreSQL server on localhost for this test only (Debian's postgresql)."""
    bins = [p for p in ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin") if os.path.isdir(p)]
    if not bins and not shutil.which("initdb"):
        pytest.skip("PostgreSQL server binaries are not installed (make setup installs them)")
    bindir = bins[0] if bins else os.path.dirname(shutil.which("initdb"))
    run = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if run and (os.stat("/dev/null").st_mode & 0o002) == 0:
        # some containers (this one included, at times) give /dev/null mode 0755; initdb,
        # run as the postgres user, writes to it. 0666 is its standard mode.
        os.chmod("/dev/null", 0o666)
    if run and (os.stat("/dev/null").st_mode & 0o002) == 0:
        pytest.skip("/dev/null is not writable by the postgres user")
    import tempfile
    data = Path(tempfile.mkdtemp(prefix="ffaccel-pg-"))     # outside pytest's 0700 tree
    os.chmod(data, 0o755)
    if run:
        shutil.chown(data, "postgres")
    sock = data / "sock"
    sock.mkdir()
    if run:
        shutil.chown(sock, "postgres")
    subprocess.run(run + [f"{bindir}/initdb", "-D", str(data / "db"), "-U", "ffaccel", "--auth=trust"],
                   check=True, capture_output=True)
    port = 55432 + os.getpid() % 1000
    subprocess.run(run + [f"{bindir}/pg_ctl", "-D", str(data / "db"), "-w", "-l", str(data / "log"), "-o",
                          f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)
    try:
        subprocess.run(run + [f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "ffaccel", "dse"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://ffaccel@127.0.0.1:{port}/dse"
    finally:
        subprocess.run(run + [f"{bindir}/pg_ctl", "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.fault
def test_two_workers_on_postgresql_evaluate_each_design_once(tmp_path, env, cli, postgres, digits_ckpt,
                                                             monkeypatch):
    sp = _space(tmp_path, digits_ckpt, limit=120, name="pg")
    monkeypatch.setenv("FFACCEL_CACHE", env["FFACCEL_CACHE"])     # the spawned workers inherit it
    # the README's URL form (no driver named): the installed driver is used
    r = cli("dse", "--no-progress", "--space", str(sp), "--storage", postgres.replace("+psycopg2", ""), "--workers", "2",
            "--out", str(tmp_path / "o"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["points"] == 16 and out["new"] == 16
    import optuna
    study = optuna.load_study(study_name="ffaccel-pg", storage=postgres)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and "duplicate_of" not in t.user_attrs]
    keys = [t.user_attrs["point_key"] for t in done]
    assert len(keys) == len(set(keys)) == 16
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, workers                      # both workers evaluated designs


# ---------------------------------------------------------------- the Optuna adapter
def test_optuna_adapter_refuses_another_major_version():
    from ffaccel.dse import optuna_compat
    optuna_compat.check_version()                               # the installed one is supported
    for v in ("4.2.1", "6.0.0"):
        with pytest.raises(FFAccelError, match=rf"optuna {v} is installed.*written for optuna 5\.x"):
            optuna_compat.check_version(v)


@pytest.mark.fault
def test_dead_local_trials_are_failed_at_once():
    """fail_dead_local_trials, through the adapter's private-API call: a RUNNING trial whose
    worker process is gone, or (local store) that never recorded a worker, fails now; a
    live worker's trial and a finished trial are left alone."""
    import optuna
    from ffaccel.dse.study import fail_dead_local_trials
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    host = os.uname().nodename
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trials = [study.ask() for _ in range(4)]
    trials[0].set_user_attr("worker", f"{host}:{dead.pid}")
    trials[1].set_user_attr("worker", f"{host}:{os.getpid()}")
    study.tell(trials[3], 1.0)
    assert fail_dead_local_trials(study, local_store=False) == 1
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert states == ["FAIL", "RUNNING", "RUNNING", "COMPLETE"]
    assert fail_dead_local_trials(study, local_store=True) == 1      # the one without a worker
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["FAIL", "RUNNING", "FAIL", "COMPLETE"]


# ---------------------------------------------------------------- shared stores
_CLAIM_SCRIPT = r'''
import multiprocessing as mp, sys
from collections import Counter

def work(url):
    import optuna
    from ffaccel.dse.storage import open_storage
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    def cb(study, frozen):
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            study.stop()
    study.optimize(lambda t: t.suggest_int("i", 0, 10 ** 6), callbacks=[cb], catch=())

if __name__ == "__main__":
    import optuna
    from ffaccel.dse.storage import open_storage
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    for i in range(n):
        study.enqueue_trial({"i": i})
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=work, args=(url,)) for _ in range(workers)]
    [p.start() for p in ps]
    [p.join() for p in ps]
    done = [t.params["i"] for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    print([p.exitcode for p in ps], sorted(Counter(done[:n]).values()) == [1] * n, sorted(done)[:n] == list(range(n)))
'''


@pytest.mark.fault
def test_sqlite_queue_claims_each_trial_once(tmp_path):
    """Three processes popping one SQLite queue: with Optuna's plain RDBStorage two of them
    claimed the same trial and died with "Cannot tell a COMPLETE trial" (2 of 3 workers in
    each of 3 runs of this script); with open_storage's IMMEDIATE transactions every queued
    trial completes once and every worker exits 0."""
    script = tmp_path / "claim.py"
    script.write_text(_CLAIM_SCRIPT)
    r = subprocess.run([sys.executable, str(script), f"sqlite:///{tmp_path / 'q.db'}", "100", "3"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[0, 0, 0] True True", r.stdout + r.stderr


@pytest.mark.fault
def test_concurrent_schema_creation_and_enqueue(tmp_path):
    """Two sweeps opening a new SQLite store at once: no "table already exists"; enqueueing
    the same grid twice at once adds each design once."""
    import threading
    from ffaccel.dse.study import _study, enqueue_grid
    sp = load_space(_space(tmp_path, "none.ckpt"))
    url = f"sqlite:///{tmp_path / 'new.db'}"
    errors, counts = [], []

    def sweep():
        try:
            counts.append(enqueue_grid(sp, _study(sp, url, create=True), url))
        except Exception as e:           # noqa: BLE001 - the test reports any failure
            errors.append(repr(e))
    ts = [threading.Thread(target=sweep) for _ in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors and sorted(counts) == [0, 16]


@pytest.mark.fault
def test_workers_are_bounded_and_postgres_urls_use_the_installed_driver():
    from ffaccel.dse.storage import check_workers, normalise_url
    check_workers(4, cpus=2)
    for n in (0, 5, 16):
        with pytest.raises(FFAccelError, match=rf"--workers={n} out of range \(allowed: 1\.\.4"):
            check_workers(n, cpus=2)
    import importlib.util
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalise_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalise_url("sqlite:////x.db") == "sqlite:////x.db"


@pytest.mark.fault
def test_unresponsive_postgres_times_out(tmp_path, digits_ckpt):
    """A server that accepts TCP and never answers: one line, exit 2, within the connect
    timeout (not a hang)."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    sp = _space(tmp_path, digits_ckpt)
    t0 = time.time()
    try:
        r = _dse("--space", str(sp), "--storage", f"postgresql://u@127.0.0.1:{port}/db",
                 env={**os.environ, "FFACCEL_PG_CONNECT_TIMEOUT": "2"})
    finally:
        srv.close()
    assert r.returncode == 2 and "cannot be opened" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert time.time() - t0 < 2 + 30


def _worker_pids(db) -> set[int]:
    c = sqlite3.connect(db, timeout=30)
    try:
        rows = c.execute("select value_json from trial_user_attributes where key = 'worker'").fetchall()
    finally:
        c.close()
    return {int(json.loads(v).rpartition(":")[2]) for (v,) in rows}


@pytest.mark.fault
@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_workers_die_with_their_parent(tmp_path, env, sig, digits_ckpt):
    """SIGKILL or SIGINT of the command stops its worker processes too (they used to run on,
    re-parented to init, until the whole sweep was done)."""
    ks = "[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]"                  # 128 designs: a long sweep
    sp, db = _space(tmp_path, digits_ckpt, limit=359, ks=ks), tmp_path / "w.db"
    proc = subprocess.Popen([sys.executable, "-m", "ffaccel.dse", "--no-progress", "--space", str(sp), "--store",
                             str(db), "--workers", "2", "--out", str(tmp_path / "o")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids: set[int] = set()
    deadline = time.time() + 240
    while time.time() < deadline and len(pids) < 2 and proc.poll() is None:
        time.sleep(0.3)
        try:
            pids = _worker_pids(db) if db.exists() else set()
        except sqlite3.OperationalError:
            continue
    assert len(pids) == 2 and proc.poll() is None, "both workers should be evaluating"
    proc.send_signal(sig)
    proc.wait(timeout=60)

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)
    assert len(_evaluated(db)) < 128                 # stopped, not run to the end


def test_fpga_section_adds_the_models_metrics_and_clock(tmp_path, env, cli, digits_ckpt):
    """A space with [fpga]: each design gets the calibrated model's resources, fmax and fit,
    latency_us is the cycles at the predicted fmax, and fmax_mhz can be an objective."""
    import csv
    from ffaccel.config import AccelConfig
    from ffaccel.fpga.devices import DEVICES
    from ffaccel.fpga.model import estimate
    text = _space(tmp_path, digits_ckpt, ks="[1.0]").read_text()
    text = text.replace("rows = [2, 5]", "rows = [2]").replace("wbits = [4, 8]", "wbits = [8]")
    text = text.replace('"area_cells:min"]', '"fmax_mhz:max"]') + '[fpga]\ndevice = "LFE5U-85F"\n'
    (tmp_path / "f.toml").write_text(text)
    r = cli("dse", "--no-progress", "--space", str(tmp_path / "f.toml"), "--store", str(tmp_path / "f.db"),
            "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "f_points.csv")))
    assert len(rows) == 2
    for row in rows:
        cfg = AccelConfig(inputs=64, classes=10, layers=(16, 16), rows=int(row["rows"]), cols=int(row["cols"]),
                          wbits=8)
        e = estimate(cfg, DEVICES["LFE5U-85F"])
        assert float(row["fmax_mhz"]) == e["fmax_mhz"] and int(row["fpga_luts"]) == e["luts"]
        assert int(row["fpga_fits"]) == 1
        assert abs(float(row["latency_us"]) - float(row["latency_cycles"]) / e["fmax_mhz"]) < 1e-6


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "examples").glob("dse_*.toml")),
                         ids=lambda p: p.name)
def test_example_spaces_load(path):
    """Every example space in examples/ parses and validates (every design a valid config)."""
    sp = load_space(path)
    assert sp.grid() and sp.objectives
    if "fpga" in path.name:
        assert sp.fpga == {"device": "LFE5U-85F"} and "fpga_luts" in sp.metrics


def _one_axis(tmp_path, cli, digits_ckpt, name: str, rows: int, axis: str) -> dict:
    """The digits space on one array (``rows`` x 4, 8-bit weights, k = 1) with one more
    ``axis`` line; run; its points by that axis's value."""
    import csv
    key = axis.split("=")[0].strip()
    text = _space(tmp_path, digits_ckpt, ks="[1.0]").read_text()
    text = text.replace("rows = [2, 5]", f"rows = [{rows}]").replace("wbits = [4, 8]", "wbits = [8]")
    text = text.replace("cols = [4, 8]", f"cols = [4]\n{axis}")
    (tmp_path / f"{name}.toml").write_text(text)
    r = cli("dse", "--no-progress", "--space", str(tmp_path / f"{name}.toml"), "--store",
            str(tmp_path / f"{name}.db"), "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stderr
    return {row[key]: row for row in csv.DictReader(open(tmp_path / "out" / f"{name}_points.csv"))}


def test_zero_skip_axis_keeps_accuracy_and_cuts_cycles(tmp_path, env, cli, digits_ckpt):
    """``zero_skip`` as an axis: the same network and exits, so the same accuracy; fewer
    weight reads and cycles (the digits' zero pixels are skipped)."""
    rows = _one_axis(tmp_path, cli, digits_ckpt, "z", 2, "zero_skip = [false, true]")
    off, on = rows["False"], rows["True"]
    assert float(on["accuracy"]) == float(off["accuracy"])
    assert float(on["latency_cycles"]) < 0.9 * float(off["latency_cycles"])
    assert float(on["energy_pj"]) < float(off["energy_pj"])


def test_batch_axis_keeps_accuracy_and_shares_weight_reads(tmp_path, env, cli, digits_ckpt):
    """``batch`` (MP samples per inference) as an axis: the same network and exits, so the
    same accuracy; each weight read of the shared layer 1 serves the batch, so less energy
    and fewer cycles per sample; the batch's latency is longer than one sample's."""
    rows = _one_axis(tmp_path, cli, digits_ckpt, "b", 5, "batch = [1, 4]")
    one, four = rows["1"], rows["4"]
    assert float(four["accuracy"]) == float(one["accuracy"])
    assert float(four["energy_pj"]) < float(one["energy_pj"])
    assert float(four["cycles_per_sample"]) < float(one["cycles_per_sample"])
    assert float(four["latency_cycles"]) > float(one["latency_cycles"])


FIDELITY_SPACE = """
[workload]
dataset = "digits"
limit = 80
val_limit = 300
toggle_samples = 1
[recipe]
min_steps = 0
qat_epochs = 1
[base]
mode = "mp"
rows = 5
cols = 8
[axes]
layers = ["1x8", "1x32"]
wbits = [2, 8]
k = [0.5, 2.0]
[strategy]
kind = "grid"
objectives = ["accuracy:max", "energy_pj:min"]
fidelity = [1, 4]
keep = 0.25
"""


@pytest.mark.slow
def test_multi_fidelity_trains_the_promoted_designs_longer(tmp_path, env):
    """Successive halving: every design at 1 epoch (4 networks: 2 shapes x 2 widths, QAT
    trains per width), then the best quarter (whole non-dominated fronts first) at 4
    epochs, training only their networks; the results and the front are the last rung's;
    a re-run evaluates nothing."""
    space = tmp_path / "f.toml"
    space.write_text(FIDELITY_SPACE)
    db = tmp_path / "f.db"
    r = _dse("--space", str(space), "--store", str(db), "--out", str(tmp_path / "out"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    r0, r1 = doc["rungs"]
    assert (r0["epochs"], r0["designs"], r0["queued_now"], r0["networks"]) == (1, 8, 8, 4)
    assert (r1["epochs"], r1["designs"], r1["queued_now"]) == (4, 2, 2) and 1 <= r1["networks"] <= 2
    assert doc["points"] == 2 and all(p["fidelity_epochs"] == 4 for p in doc["pareto"])
    # the promoted designs are rung 1's best: none of rung 0's other designs dominates them
    from ffaccel.dse.space import load_space
    from ffaccel.dse.study import _study, collect, rung_points
    sp = load_space(space)
    st = _study(sp, f"sqlite:///{db}", create=False)
    low = collect(sp, st, 1)
    promoted = {sp.point_key({**sp.design(p), "fidelity_epochs": 1}) for p in rung_points(sp, 1, low)}
    front = {row["point_key"] for row in pareto(low, sp.objectives)}
    assert len(promoted) == 2 and (promoted <= front if len(front) >= 2 else front <= promoted)
    again = _dse("--space", str(space), "--store", str(db), "--out", str(tmp_path / "out"), "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["new"] == 0
    assert [x["queued_now"] for x in json.loads(again.stdout)["rungs"]] == [0, 0]


@pytest.mark.fault
@pytest.mark.parametrize("strategy,fragment", [
    ('fidelity = [4, 1]', "rising"),
    ('fidelity = [4]', "at least two"),
    ('fidelity = [1, 4]\nkeep = 0', "keep=0"),
    ('keep = 0.5', "keep applies with a fidelity"),
    ('kind = "nsga2"\nfidelity = [1, 4]', 'applies to kind = "grid"'),
])
def test_fidelity_validation(tmp_path, strategy, fragment):
    text = FIDELITY_SPACE.replace('fidelity = [1, 4]\nkeep = 0.25\n', "").replace('kind = "grid"\n', "")
    p = tmp_path / "v.toml"
    p.write_text(text.replace("[strategy]\n", "[strategy]\n" + strategy + "\n"))
    r = _dse("--space", str(p), "--store", str(tmp_path / "v.db"))
    assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_recipe_axes_vary_the_training(tmp_path):
    """``recipe.FIELD`` axes: each value is its own design and recipe; the config ignores
    them; unknown keys, bad values and a checkpoint workload are refused up front."""
    text = FIDELITY_SPACE.replace('k = [0.5, 2.0]', 'k = [0.5]\n"recipe.theta" = [1.0, 16.0]')
    p = tmp_path / "r.toml"
    p.write_text(text)
    sp = load_space(p)
    rung0 = [pt for pt in sp.grid() if pt["layers"] == "1x8" and pt["wbits"] == 2]
    assert [sp.recipe_for({**pt, "fidelity_epochs": 4}).theta for pt in rung0] == [1.0, 16.0]
    assert sp.recipe_for({**rung0[0], "fidelity_epochs": 1}).epochs == 1
    assert sp.config(rung0[0]) == sp.config(rung0[1])
    assert len({sp.point_key(pt) for pt in rung0}) == 2
    for bad, fragment in (('"recipe.thetta" = [1.0]', "'thetta' is not a recipe key"),
                          ('"recipe.theta" = [-1.0]', "theta=-1.0 out of range"),
                          ('"recipe.epochs" = [3]', "fidelity sets the epochs")):
        p.write_text(FIDELITY_SPACE.replace('k = [0.5, 2.0]', 'k = [0.5]\n' + bad))
        with pytest.raises(FFAccelError, match=fragment):
            load_space(p)


@pytest.mark.fault
@pytest.mark.slow          # the one-machine multi-fidelity test runs by default
def test_multi_fidelity_on_two_machines_shares_the_rungs(tmp_path, env, postgres):
    """Two commands on one PostgreSQL study (two machines): each waits for the other's
    trials of a rung before promoting, both promote the same designs, and no design of any
    rung is evaluated twice."""
    space = tmp_path / "pgf.toml"
    space.write_text(FIDELITY_SPACE)
    cmd = [sys.executable, "-m", "ffaccel.dse", "--no-progress", "--space", str(space), "--storage", postgres,
           "--json"]
    procs = [subprocess.Popen(cmd + ["--out", str(tmp_path / f"o{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    docs = [json.loads(o[0]) for o in outs]
    assert [d["points"] for d in docs] == [2, 2]
    assert {r["point_key"] for r in docs[0]["pareto"]} == {r["point_key"] for r in docs[1]["pareto"]}
    assert sum(d["rungs"][0]["queued_now"] for d in docs) == 8
    assert sum(d["rungs"][1]["queued_now"] for d in docs) == 2
    import optuna
    study = optuna.load_study(study_name="ffaccel-pgf", storage=postgres)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and "duplicate_of" not in t.user_attrs]
    keys = [t.user_attrs["point_key"] for t in done]
    assert len(keys) == len(set(keys)) == 10
