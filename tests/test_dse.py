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

import pytest

from ffaccel.dse.pareto import pareto
from ffaccel.dse.space import METRICS, load_space
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
    }
    for text, frag in bad.items():
        (tmp_path / "b.toml").write_text(text)
        with pytest.raises(FFAccelError, match=frag):
            load_space(tmp_path / "b.toml")
    sp = load_space(_space(tmp_path, "none.ckpt"))
    assert len(sp.grid()) == 16 and sp.config(sp.grid()[0]).rows == 2


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


def test_two_workers_on_postgresql_evaluate_each_design_once(tmp_path, env, cli, postgres, digits_ckpt,
                                                             monkeypatch):
    sp = _space(tmp_path, digits_ckpt, limit=120, name="pg")
    monkeypatch.setenv("FFACCEL_CACHE", env["FFACCEL_CACHE"])     # the spawned workers inherit it
    r = cli("dse", "--no-progress", "--space", str(sp), "--storage", postgres, "--workers", "2",
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
