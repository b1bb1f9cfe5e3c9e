"""Shared fixtures: one trained digits checkpoint for the whole session, and in-process
command-line runs.

Tests that need *a* trained network (the checkpoint paths of perf, energy, eval, train
--init and the DSE) share ``digits_ckpt``: trained once, in-process, through the library
(``ffaccel.model.training.fit``); the training itself takes well under a second. Tests that need an accurate network
train their own (tests/test_model.py).
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

# the network of digits_ckpt (tests that use it spell it "2x16")
DIGITS_LAYERS = (16, 16)
# a fast recipe for tests (well under a second); every layer scored, so exits spread over layers
# (no fine-tuning: the session network the RTL tests share stays the one they were written for)
DIGITS_RECIPE = dict(epochs=8, min_steps=0, lr=0.03, theta=2.0, batch=32, hard_negatives=0.5, score_layers="all",
                     qat_epochs=0)


@pytest.fixture(scope="session")
def digits():
    from ffaccel.data import load_dataset
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory, digits):
    """Path of an MP 64-16-16-10 checkpoint trained on digits (quantised, thresholds
    calibrated), written by the same code as ``python -m ffaccel.train``. Read-only: copy
    it before changing it."""
    from ffaccel.config import AccelConfig
    from ffaccel.model.checkpoint import save_checkpoint
    from ffaccel.model.recipe import TrainRecipe
    from ffaccel.model.training import fit
    cfg = AccelConfig(inputs=digits.inputs, classes=digits.classes, layers=DIGITS_LAYERS, mode="mp")
    net, qcfg, meta = fit(digits, cfg, TrainRecipe(**DIGITS_RECIPE), progress=False)
    path = tmp_path_factory.mktemp("digits-ckpt") / "digits-2x16.ckpt"
    save_checkpoint(path, net, qcfg, meta)
    return path


_MAINS = {"train": "ffaccel.train", "eval": "ffaccel.eval", "perf": "ffaccel.perf.__main__",
          "energy": "ffaccel.energy.__main__", "dse": "ffaccel.dse.__main__", "gen": "ffaccel.gen",
          "verify": "ffaccel.verify", "lint": "ffaccel.lint", "fpga": "ffaccel.fpga.__main__"}


@pytest.fixture
def cli(capsys):
    """``cli("perf", *argv)`` runs ``python -m ffaccel.perf *argv`` in this process, exactly
    as its ``__main__`` does (``run_main``: user errors -> one line, status 2; argparse
    errors exit 2 too), and returns (returncode, stdout, stderr) like ``subprocess.run``."""
    def run(tool: str, *argv: str) -> SimpleNamespace:
        from ffaccel.cli import run_main
        mod = importlib.import_module(_MAINS[tool])
        capsys.readouterr()                              # drop anything printed before
        try:
            rc = run_main(mod.main, mod.PROG, list(argv))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)
    return run
