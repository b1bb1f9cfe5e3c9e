"""Float Forward-Forward network: layer-local training (Hinton 2022; LightFF's recipe) and
float inference with the same early-exit rules as the integer golden model.

Layer: h = ReLU(W x / ||x|| + b). Training goodness: mean(h^2) (LightFF), loss
softplus(theta - g_pos) + softplus(g_neg - theta); the input of every layer is detached,
so gradients never cross layers. Inference score: sum(h^2), accumulated over layers (MP),
or cumulative head logits on the neutral-label input (OP).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import AccelConfig
from .augment import shifter
from .embed import embed_labels, embed_neutral
from .exits import cumulative
from .recipe import TrainRecipe

EPS = 1e-12


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(EPS)


def round_to_grid(w: torch.Tensor, frac: int, wmax: int) -> torch.Tensor:
    """``w`` rounded half up to ``k * 2**-frac`` with ``|k| <= wmax`` (the QAT grid)."""
    return torch.clamp(torch.floor(w * 2.0 ** frac + 0.5), -wmax, wmax) * 2.0 ** -frac


def state_shapes(cfg: AccelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of ``FFNet(cfg)``'s state, without allocating it (a
    checkpoint is checked against these before its network is built)."""
    out: dict[str, tuple[int, ...]] = {}
    for i, (n_in, n_out) in enumerate(zip(cfg.fan_in, cfg.layers)):
        out[f"layers.{i}.weight"] = (n_out, n_in)
        out[f"layers.{i}.bias"] = (n_out, cfg.bsff_k) if cfg.bsff else (n_out,)
    if cfg.mode == "op":
        for i, n in enumerate(cfg.layers):
            out[f"heads.{i}.weight"] = (cfg.classes, n)
            out[f"heads.{i}.bias"] = (cfg.classes,)
    return out


class FFNet(torch.nn.Module):
    """FF layers on the unit-length input (the hardware's form).

    Weights start uniform in [-1, 1]: on a unit-length input that is PyTorch's default
    init on an RMS-normalised input (Hinton's and LightFF's ``x / rms(x)``), whose length
    is ``sqrt(fan_in)``. Biases start uniform in [-1, 1] as well (wider than PyTorch's
    default; the MNIST results were trained so). ``train_ff`` scales the weights' Adam
    step by ``sqrt(fan_in)`` to match, so training follows the RMS form (up to Adam's eps)
    while the stored weights stay those of the unit-length datapath
    (docs/architecture.md section 2).
    """

    def __init__(self, cfg: AccelConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        self.layers = torch.nn.ModuleList()
        for n_in, n_out in zip(cfg.fan_in, cfg.layers):
            lin = torch.nn.Linear(n_in, n_out)
            bound = 1.0
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=g)
                lin.bias.uniform_(-bound, bound, generator=g)
            if cfg.bsff:
                # one bias per tied unit: U(-1, 1) around offsets spread over [-1.5, 1.5],
                # so the k units of a row start at different points of the sigmoid
                k = cfg.bsff_k
                off = torch.linspace(-1.5, 1.5, k) if k > 1 else torch.zeros(1)
                b = torch.empty(n_out, k).uniform_(-bound, bound, generator=g) + off
                lin.bias = torch.nn.Parameter(b)
            self.layers.append(lin)
        self.heads = torch.nn.ModuleList(
            torch.nn.Linear(n, cfg.classes) for n in cfg.layers) if cfg.mode == "op" else torch.nn.ModuleList()
        for h in self.heads:
            with torch.no_grad():
                h.weight.zero_()
                h.bias.zero_()
        if cfg.exit_head != "learned":
            self.set_lls_heads()
        #: quantisation-aware training (ffaccel.model.qat): per layer (frac, wmax), the grid
        #: the forward pass rounds the weights to; None: float weights
        self.wgrid: list[tuple[int, int]] | None = None
        #: physical layers in front of digital layers (cfg.physical): run, never differentiated;
        #: built on first use (a loaded checkpoint starts no process until it runs)
        self._physical = None
        #: an ``exec`` spec read from a checkpoint runs its command only when allowed
        #: (``physical.check_exec_allowed``); a network built here from a spec is allowed
        self.exec_allowed = True
        self._cos_r = [None] * len(cfg.layers)

    @property
    def physical(self):
        if self._physical is None and self.cfg.physical:
            from .physical import build_stack, check_exec_allowed
            if not self.exec_allowed:
                check_exec_allowed(self.cfg.physical)
            self._physical = build_stack(self.cfg.physical, self.cfg.inputs, self.cfg.layers)
        return self._physical

    @physical.setter
    def physical(self, stack) -> None:
        self._physical = stack

    def block_input(self, i: int, u: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s input from its block input ``u`` (..., n_u): ``u``, or P's response
        (``[P(u), u]`` with concat). P is only run: model-free, no gradient reaches it."""
        if not self.cfg.physical or not self.cfg.physical_at[i]:
            return u
        flat = u.detach().reshape(-1, u.shape[-1]).double().cpu().numpy()
        p = torch.as_tensor(self.physical(i, flat), dtype=u.dtype).reshape(*u.shape[:-1], -1)
        if i == 0:
            # layer 1's response is read on the image codes' grid, which saturates at amax
            # (the golden model and the engine clip it there; later layers' grid is chosen
            # by the quantiser from the responses themselves)
            p = p.clamp(max=float(self.cfg.amax))
        return torch.cat([p, u.detach()], -1) if self.cfg.blocks[i].concat else p

    def goodness(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s goodness of outputs ``h`` (..., n) as inference scores it: sum(h^2),
        or (``cfg.goodness == "cos"``) the cosine of h with the layer's fixed vector r_l."""
        if self.cfg.goodness == "sq":
            return (h * h).sum(-1)
        if self._cos_r[i] is None:
            from ..config import COS_RBITS
            from ..fixedpoint import cos_reference
            r = torch.as_tensor(cos_reference(i, h.shape[-1], COS_RBITS), dtype=torch.float64)
            self._cos_r[i] = (r / r.norm().clamp_min(EPS)).to(h.dtype)
        return (h @ self._cos_r[i]) / h.norm(dim=-1).clamp_min(EPS)

    def set_lls_heads(self) -> None:
        """LLS heads: the fixed integer basis at its format, no bias, never trained."""
        from .lls import lls_basis
        for h, n in zip(self.heads, self.cfg.layers):
            with torch.no_grad():
                h.weight.copy_(torch.as_tensor(lls_basis(self.cfg, n) / 2.0 ** self.cfg.lls_hfrac))
                h.bias.zero_()
            h.weight.requires_grad_(False)
            h.bias.requires_grad_(False)

    def weight(self, i: int) -> torch.Tensor:
        """Layer i's weight as the forward pass uses it: rounded to the QAT grid (with a
        straight-through gradient) while ``wgrid`` is set."""
        w = self.layers[i].weight
        if self.wgrid is None:
            return w
        q = round_to_grid(w, *self.wgrid[i])
        return w + (q - w).detach()

    def layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.bsff:
            return self.activate(i, F.linear(_normalise(x), self.weight(i)))
        return self.unit(F.linear(_normalise(x), self.weight(i), self.layers[i].bias))

    def unit(self, z: torch.Tensor) -> torch.Tensor:
        """The real-valued units: ReLU, or |z| (``neuron='abs'``)."""
        return z.abs() if self.cfg.neuron == "abs" else F.relu(z)

    def fire_prob(self, i: int, z: torch.Tensor) -> torch.Tensor:
        """BSFF: the firing probability (..., n, k) of the tied units of layer ``i`` from its
        normalised pre-activation ``z`` (..., n) (bias not yet added)."""
        return torch.sigmoid(z[..., None] + self.layers[i].bias)

    def activate(self, i: int, z: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s output from its normalised pre-activation without bias: ReLU or |z|, or
        the count of BSFF tied units that fire (sampled with the torch generator)."""
        if not self.cfg.bsff:
            return self.unit(z + self.layers[i].bias)
        return torch.bernoulli(self.fire_prob(i, z)).sum(-1)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_blocks(x)[0]

    def forward_blocks(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Every layer's output, and per layer the response of the physical layer in front
        of it (None where there is none)."""
        hs, ps = [], []
        for i in range(len(self.layers)):
            xin = self.block_input(i, x)
            ps.append(xin[..., : self.cfg.blocks[i].n_p] if xin is not x else None)
            x = self.layer(i, xin)
            hs.append(x)
        return hs, ps

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def mp_goodness(self, x_codes: np.ndarray, batch: int = 1000, layers: int | None = None) -> np.ndarray:
        """Per-layer goodness (B, L, classes) of all label copies (``goodness``: sum(h^2) or
        the cosine), layer 1 shared where it can be (only the first ``layers`` layers when
        given)."""
        cfg = self.cfg
        out = []
        w1 = self.weight(0)
        for s in range(0, len(x_codes), batch):
            xb = torch.as_tensor(np.asarray(x_codes[s:s + batch]), dtype=torch.float32)
            if not cfg.share_layer1:
                # every copy's whole input (a physical layer in front of layer 1 sees it)
                from .embed import embed_all
                h = torch.as_tensor(embed_all(np.asarray(x_codes[s:s + batch]), cfg), dtype=torch.float32)
                gs = []
                for i in range(layers or len(self.layers)):
                    h = self.layer(i, self.block_input(i, h))
                    gs.append(self.goodness(i, h))
                out.append(torch.stack(gs, 1))
                continue
            img = xb.clone()
            img[:, : cfg.classes] = 0
            norm = torch.sqrt((img * img).sum(1) + float(cfg.label_value) ** 2)        # (B,)
            base = img @ w1.T                                                       # (B, n1)
            lab = float(cfg.label_value) * w1[:, : cfg.classes].T                   # (C, n1)
            h = self.activate(0, (base[:, None, :] + lab[None]) / norm[:, None, None])
            gs = [self.goodness(0, h)]
            for i in range(1, layers or len(self.layers)):
                h = self.layer(i, self.block_input(i, h))
                gs.append(self.goodness(i, h))
            out.append(torch.stack(gs, 1))
        return torch.cat(out).double().numpy()

    @torch.no_grad()
    def op_logits(self, x_codes: np.ndarray, batch: int = 1000) -> np.ndarray:
        """Per-layer head logits (B, L, classes) on the neutral-label input."""
        out = []
        for s in range(0, len(x_codes), batch):
            xb = torch.as_tensor(embed_neutral(x_codes[s:s + batch], self.cfg), dtype=torch.float32)
            hs = self.forward_all(xb)
            out.append(torch.stack([head(_normalise(h)) for h, head in zip(hs, self.heads)], 1))
        return torch.cat(out).double().numpy()

    def layer_scores(self, x_codes: np.ndarray) -> np.ndarray:
        """Each layer's own score (B, L, classes): MP goodness, OP head logits (BSFF: the
        units sampled from a torch generator seeded with 0, so a score is reproducible)."""
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return self.mp_goodness(x_codes) if self.cfg.mode == "mp" else self.op_logits(x_codes)

    def scores(self, x_codes: np.ndarray) -> np.ndarray:
        """Cumulative scores (B, L, classes) of the scored layers (``cfg.scored``)."""
        return cumulative(self.layer_scores(x_codes), self.cfg.scored)


# ---------------------------------------------------------------------- training
@dataclass
class TrainLog:
    epochs: int
    seconds: float
    loss: list[float]
    train_seconds_per_epoch: float


_flushing = 0          # depth of nested trainers that flush denormals (the flag is per thread)


def flushes_denormals(train):
    """Decorator for a trainer: denormal floats read as zero while it runs (the CPU's
    flush-to-zero and denormals-are-zero modes, ``torch.set_flush_denormal``), and the
    default comes back afterwards.

    Adam's first moment of a weight whose gradient is zero (the inputs of a unit the ReLU
    keeps off) shrinks by beta1 = 0.9 per step and is denormal after about 800 steps;
    arithmetic on denormals is microcoded on x86, and it made Adam's step 72% of a 4x2000
    training's time, twice the time of the first epoch (docs/architecture.md, section 2).
    Values below 1.2e-38 carry nothing a training needs. The flag covers the calling thread
    (torch's single thread by default); intra-op worker threads keep their own."""
    @functools.wraps(train)
    def wrapper(*args, **kwargs):
        global _flushing
        if _flushing == 0 and not torch.set_flush_denormal(True):
            return train(*args, **kwargs)          # this CPU has no such mode
        _flushing += 1
        try:
            return train(*args, **kwargs)
        finally:
            _flushing -= 1
            if _flushing == 0:
                torch.set_flush_denormal(False)
    return wrapper


def layer_optimizers(net: FFNet, lr: float, fan_in_lr: bool) -> list[torch.optim.Adam]:
    """One Adam per layer; group 0 holds the weight, group 1 the bias.

    Adam's step is ``lr`` in parameter units whatever the gradient's scale, so a weight
    step of ``sqrt(fan_in) * lr`` on the unit-length input is an ``lr`` step of the
    RMS-input layer ``W' = W / sqrt(fan_in)``, equal up to Adam's eps
    (tests/test_model.py checks it).
    """
    opts = []
    for lin in net.layers:
        gain = math.sqrt(lin.in_features) if fan_in_lr else 1.0
        opts.append(torch.optim.Adam([{"params": [lin.weight], "lr": lr * gain, "base_lr": lr * gain},
                                      {"params": [lin.bias], "lr": lr, "base_lr": lr}]))
    return opts


def _epochs(net: FFNet, opts: list, n: int, *, epochs: int, batch: int, rng: np.random.Generator,
            decay: bool, desc: str, progress: bool, step, on_epoch=None) -> TrainLog:
    """The layer-local training loop shared by FF and LLS training: per epoch the learning
    rate (falling linearly to 0 over the second half with ``decay``), a seeded shuffle,
    and ``step(idx)`` per mini-batch, which trains every layer and returns the summed loss."""
    from tqdm import tqdm

    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(total=epochs * ((n + batch - 1) // batch), disable=not progress,
               desc=desc, unit="batch", mininterval=2.0)
    for epoch in range(epochs):
        if decay:
            for opt in opts:
                for grp in opt.param_groups:
                    grp["lr"] = grp["base_lr"] * min(1.0, 2.0 * (1.0 - epoch / epochs))
        order = rng.permutation(n)
        tot, cnt = 0.0, 0
        for s in range(0, n, batch):
            tot += step(order[s:s + batch])
            cnt += 1
            bar.update(1)
        losses.append(tot / max(cnt, 1) / len(opts))
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, net)
    bar.close()
    dt = time.perf_counter() - t0
    return TrainLog(epochs=epochs, seconds=dt, loss=losses, train_seconds_per_epoch=dt / max(epochs, 1))


@flushes_denormals
def train_ff(net: FFNet, x_codes: np.ndarray, y: np.ndarray, recipe: TrainRecipe, *,
             progress: bool = True, fan_in_lr: bool = True, on_epoch=None,
             image_shape: tuple[int, int] | None = None) -> TrainLog:
    """Layer-local FF training of all layers at once, one Adam per layer, as ``recipe`` says
    (``recipe.effective_epochs`` passes; lr, theta, batch, hard negatives, decay, seed).

    ``fan_in_lr=False`` is the ablation of docs/results.md (plain Adam on the unit-length
    form, whose weights must grow ``sqrt(fan_in)``-fold and learn that much slower); it is
    not a recipe choice. ``on_epoch(epoch, net)`` is called after every epoch.
    Positive = true label embedded; negative = a wrong label, drawn uniformly, or with
    probability ``hard_negatives`` the wrong label that layer 1 of the current network
    finds most plausible (Hinton's hard negatives, scored by one shared layer-1 pass).
    Each layer only sees its detached input. ``image_shape``: (height, width) of the
    images, for the recipe's shift augmentation (``ffaccel.model.augment``).
    """
    cfg = net.cfg
    x_codes, y = recipe.subset(x_codes, y)
    aug = shifter(recipe, image_shape)
    theta, hard_negatives = recipe.theta, recipe.hard_negatives
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    opts = layer_optimizers(net, recipe.cos_lr if cfg.goodness == "cos" else recipe.lr, fan_in_lr)

    def step(idx) -> float:
        xb, yb = aug(x_codes[idx]), y[idx]
        wrong = (yb + rng.integers(1, cfg.classes, size=len(yb))) % cfg.classes
        if hard_negatives > 0:
            pick = rng.random(len(yb)) < hard_negatives
            if pick.any():
                # the most plausible wrong label by layer-1 goodness (one shared matmul)
                sc = net.mp_goodness(xb[pick], layers=1)[:, 0].copy()
                sc[np.arange(pick.sum()), yb[pick]] = -np.inf
                wrong[pick] = sc.argmax(1)
        pos = torch.as_tensor(embed_labels(xb, yb, cfg), dtype=torch.float32)
        neg = torch.as_tensor(embed_labels(xb, wrong, cfg), dtype=torch.float32)
        tot = 0.0
        for i, opt in enumerate(opts):
            pos, neg = net.block_input(i, pos), net.block_input(i, neg)
            if cfg.goodness == "cos":
                # PhyLL: softplus(-theta (g_pos - g_neg)) on the pair's cosine goodness
                hp, hn = net.layer(i, pos), net.layer(i, neg)
                loss = F.softplus(-recipe.cos_theta * (net.goodness(i, hp) - net.goodness(i, hn))).mean()
            elif cfg.bsff:
                (gp, hp), (gn, hn) = bsff_goodness(net, i, pos), bsff_goodness(net, i, neg)
                gain, target = recipe.bsff_gain, recipe.bsff_target
                loss = F.softplus(gain * torch.cat([target - gp, gn - target])).mean()
            else:
                hp, hn = net.layer(i, pos), net.layer(i, neg)
                gp, gn = hp.pow(2).mean(1), hn.pow(2).mean(1)
                loss = F.softplus(torch.cat([theta - gp, gn - theta])).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            pos, neg = hp.detach(), hn.detach()
            tot += float(loss.detach())
        return tot

    return _epochs(net, opts, len(x_codes), epochs=recipe.effective_epochs(len(x_codes)), batch=recipe.batch,
                   rng=rng, decay=recipe.decay, desc="FF train", progress=progress, step=step, on_epoch=on_epoch)


def bsff_goodness(net: FFNet, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BSFF training goodness of layer ``i`` on input ``x`` and the sampled output.

    The goodness of a binary stochastic layer is ``sum_j c_j^2`` (``c_j`` the count of
    neuron j's tied units that fire; for k = 1 the count of firing units). Training uses
    its expectation given the input, exact and differentiable:
    ``E[c_j^2] = sum_k p_jk (1 - p_jk) + (sum_k p_jk)^2``, averaged over the layer's units
    and divided by k^2 (a fraction, 0..1, whatever the width and k). The next layer sees
    sampled counts, as at inference (its input is detached anyway)."""
    p = net.fire_prob(i, F.linear(_normalise(x), net.weight(i)))
    k = p.shape[-1]
    e2 = (p * (1 - p)).sum(-1) + p.sum(-1).pow(2)
    with torch.no_grad():
        h = torch.bernoulli(p).sum(-1)
    return e2.mean(-1) / (k * k), h


@flushes_denormals
def train_heads(net: FFNet, x_codes: np.ndarray, y: np.ndarray, recipe: TrainRecipe, *,
                progress: bool = True, image_shape: tuple[int, int] | None = None) -> float:
    """OP heads: cumulative logits L_l = L_{l-1} + H_l (h_l/||h_l||), cross-entropy at every
    layer, on the neutral-label input; the FF layers stay frozen (``recipe``: head_lr,
    effective head epochs, batch, seed). Returns seconds."""
    from tqdm import tqdm

    cfg = net.cfg
    x_codes, y = recipe.subset(x_codes, y)
    aug = shifter(recipe, image_shape, seed_offset=2)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed + 1)
    opt = torch.optim.Adam(net.heads.parameters(), lr=recipe.head_lr)
    n = len(x_codes)
    batch, epochs = recipe.batch, recipe.effective_head_epochs(n)
    t0 = time.perf_counter()
    yt_all = torch.as_tensor(y, dtype=torch.long)
    bar = tqdm(total=epochs * ((n + batch - 1) // batch), disable=not progress,
               desc="OP heads", unit="batch", mininterval=2.0)
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            xb = torch.as_tensor(embed_neutral(aug(x_codes[idx]), cfg), dtype=torch.float32)
            with torch.no_grad():
                hs = [_normalise(h) for h in net.forward_all(xb)]
            acc, loss = 0, 0
            for h, head in zip(hs, net.heads):
                acc = acc + head(h)
                loss = loss + F.cross_entropy(acc, yt_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
    bar.close()
    return time.perf_counter() - t0


@flushes_denormals
def train_lls(net: FFNet, x_codes: np.ndarray, y: np.ndarray, recipe: TrainRecipe, *,
              progress: bool = True, image_shape: tuple[int, int] | None = None) -> TrainLog:
    """Layer-local LLS training (the objective the fixed basis heads are made for): each
    layer, on its detached input, minimises the cross-entropy of its own logits
    ``B_l (h_l / ||h_l||) / temperature`` against the label, ``B_l`` the fixed basis of its
    head; the input is the neutral-label embedding, as in One-Pass inference. One Adam per
    layer with the fan-in-scaled weight step of ``layer_optimizers``; epochs, lr, batch,
    decay, seed, the shift augmentation (``image_shape``) and the temperature from ``recipe``."""
    cfg = net.cfg
    if cfg.exit_head == "learned":
        raise ValueError("train_lls needs a config with LLS heads")
    x_codes, y = recipe.subset(x_codes, y)
    aug = shifter(recipe, image_shape)
    temperature = recipe.lls_temperature
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    opts = layer_optimizers(net, recipe.lr, True)
    yt_all = torch.as_tensor(y, dtype=torch.long)

    def step(idx) -> float:
        x = torch.as_tensor(embed_neutral(aug(x_codes[idx]), cfg), dtype=torch.float32)
        tot = 0.0
        for i, opt in enumerate(opts):
            h = net.layer(i, net.block_input(i, x))
            loss = F.cross_entropy(net.heads[i](_normalise(h)) / temperature, yt_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            x = h.detach()
            tot += float(loss.detach())
        return tot

    return _epochs(net, opts, len(x_codes), epochs=recipe.effective_epochs(len(x_codes)), batch=recipe.batch,
                   rng=rng, decay=recipe.decay, desc="LLS train", progress=progress, step=step)
