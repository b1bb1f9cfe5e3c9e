"""Reproduction for ``python -m ffaccel.import`` (issue #20): train a small MNIST network the
way each public FF code base does, save its state dict the way its users do, import it,
and report the conversion error and the accuracy at each step.

The two training loops are written here from the code bases' published algorithms (no code
copied), shortened to fit a CPU: mpezeshki/pytorch_forward_forward trains each layer in
turn on one full batch (Adam 0.03, threshold 2, loss softplus on mean(h^2), negatives =
the batch's labels shuffled) for 1000 steps (here ``--mp-steps`` on ``--mp-train`` images);
loeweX/Forward-Forward trains all layers at once on mini-batches of 100 (SGD 1e-3,
momentum 0.9, weight decay 3e-4, loss BCE on sum(h^2) - width, peer normalisation 0.03)
for 100 epochs (here ``--lx-epochs``), with layers of 1000 (here ``--lx-width``).

    python scripts/import_ff.py --json OUT.json      # about 10 minutes on one core
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ffaccel.data import load_dataset  # noqa: E402
from ffaccel.fsutil import atomic_write_text  # noqa: E402
from ffaccel.model.importers import their_inputs  # noqa: E402

CLASSES = 10


def overlay(x: torch.Tensor, y: torch.Tensor, value) -> torch.Tensor:
    out = x.clone()
    out[:, :CLASSES] = 0.0
    out[torch.arange(len(x)), y] = value
    return out


def train_mpezeshki(x, y, dims, steps, seed):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
    bmax = x.max()
    pos = overlay(x, y, bmax)
    neg = overlay(x, y[torch.randperm(len(y))], bmax)

    def fwd(lin, h):
        return F.relu(lin(h / (h.norm(dim=1, keepdim=True) + 1e-4)))
    for lin in layers:
        opt = torch.optim.Adam(lin.parameters(), lr=0.03)
        for _ in range(steps):
            gp, gn = fwd(lin, pos).pow(2).mean(1), fwd(lin, neg).pow(2).mean(1)
            loss = F.softplus(torch.cat([2.0 - gp, gn - 2.0])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pos, neg = fwd(lin, pos), fwd(lin, neg)
    return {f"layers.{i}.{k}": v.detach().clone() for i, lin in enumerate(layers) for k, v in lin.state_dict().items()}


def train_loewex(x, y, width, n_layers, epochs, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = torch.nn.ModuleList([torch.nn.Linear(x.shape[1], width)] +
                                [torch.nn.Linear(width, width) for _ in range(n_layers - 1)])
    for lin in model:
        torch.nn.init.normal_(lin.weight, 0.0, 1.0 / math.sqrt(lin.weight.shape[0]))
        torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=3e-4)
    running = [torch.full((width,), 0.5) for _ in model]

    def rms(z):
        return z / (z.pow(2).mean(-1, keepdim=True).sqrt() + 1e-8)
    bs = 100
    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(len(x)))
        for s in range(0, len(x), bs):
            idx = order[s:s + bs]
            yb = y[idx]
            wrong = (yb + torch.as_tensor(rng.integers(1, CLASSES, size=len(yb)))) % CLASSES
            z = torch.cat([overlay(x[idx], yb, 1.0), overlay(x[idx], wrong, 1.0)])
            tgt = torch.cat([torch.ones(len(yb)), torch.zeros(len(yb))])
            z = rms(z)
            loss = 0.0
            for i, lin in enumerate(model):
                z = lin(z)
                z = z + (z.clamp(min=0) - z).detach()     # ReLU whose gradient passes everywhere
                m = z[:len(yb)].mean(0)
                running[i] = running[i].detach() * 0.9 + m * 0.1
                loss = loss + 0.03 * ((running[i].mean() - running[i]) ** 2).mean()
                loss = loss + F.binary_cross_entropy_with_logits(z.pow(2).sum(1) - z.shape[1], tgt)
                z = rms(z.detach())
            opt.zero_grad()
            loss.backward()
            opt.step()
    state = {f"model.{i}.{k}": v.detach().clone() for i, lin in enumerate(model) for k, v in lin.state_dict().items()}
    state["linear_classifier.0.weight"] = torch.zeros(CLASSES, width * (n_layers - 1))   # its read-out, untrained here
    return state


def run_import(fmt, path, out, offset):
    r = subprocess.run([sys.executable, "-m", "ffaccel.import", "--format", fmt, str(path), "--classes", "10",
                        "--dataset", "mnist", "--out", str(out), "--offset", offset, "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"import failed: {r.stderr.strip().splitlines()[-1]}")
    return json.loads(r.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="import_ff", description=__doc__.splitlines()[0])
    p.add_argument("--mp-steps", type=int, default=1000)
    p.add_argument("--mp-train", type=int, default=5000)
    p.add_argument("--lx-epochs", type=int, default=10)
    p.add_argument("--lx-width", type=int, default=500)
    p.add_argument("--out-dir", default=str(ROOT / "build" / "import"))
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    for name in ("mp_steps", "mp_train", "lx_epochs", "lx_width"):
        if getattr(args, name) < 1:
            print(f"import_ff: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("mnist")
    x = torch.as_tensor(their_inputs(ds.x_train), dtype=torch.float32)
    y = torch.as_tensor(ds.y_train)
    report = {}
    for fmt in ("mpezeshki", "loewex"):
        t0 = time.perf_counter()
        if fmt == "mpezeshki":
            state = train_mpezeshki(x[:args.mp_train], y[:args.mp_train], [784, 500, 500], args.mp_steps, 1234)
        else:
            state = train_loewex(x, y, args.lx_width, 3, args.lx_epochs, 42)
        train_s = time.perf_counter() - t0
        path = out / f"{fmt}.pt"
        torch.save(state, path)
        rows = {}
        for offset in ("drop", "fold"):
            rep = run_import(fmt, path, out / f"{fmt}-{offset}.ckpt", offset)
            rows[offset] = {"float_full": rep["float"]["accuracy_full"], "integer_full": rep["integer"]["accuracy_full"],
                            "integer_exit": rep["integer"]["accuracy"], "mac_reduction": rep["integer"]["mac_reduction"]}
        report[fmt] = {"train_seconds": round(train_s, 1), "layers": rep["config"]["layers"],
                       "compare": rep["compare"], "accuracy_theirs_float": rep["accuracy_theirs_float"],
                       "accuracy_ffaccel_float_their_inputs": rep["accuracy_ffaccel_float_their_inputs"],
                       "unsigned_codes": rows, "label_value": rep["label_value"]}
        r = report[fmt]
        print(f"{fmt}: trained in {train_s:.0f} s; goodness max abs diff {r['compare']['max_abs_diff_per_layer']:.2e}; "
              f"theirs {r['accuracy_theirs_float'] * 100:.2f}%, ffaccel float same inputs "
              f"{r['accuracy_ffaccel_float_their_inputs'] * 100:.2f}%; unsigned codes: "
              + "; ".join(f"{k} float {v['float_full'] * 100:.2f}% integer {v['integer_full'] * 100:.2f}%"
                          for k, v in rows.items()), file=sys.stderr)
    text = json.dumps(report, indent=2)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
