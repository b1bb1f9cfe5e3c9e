"""The bit-exact integer golden model: the reference for RTL, cycle simulator and energy.

Every operation is an integer operation of docs/architecture.md ("Integer datapath").
Matrix products run as float64 BLAS matmuls, which are exact integer matmuls while every
partial sum stays below 2**53; :meth:`AccelConfig.check_float64_exact` proves that bound
from the config before anything runs, so a config that could break it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import HEAD_BIAS_LOGITS, AccelConfig, ConfigError
from .embed import embed_all, embed_neutral
from .exits import fires
from ..fixedpoint import bsff_epoch_states, bsff_key
from ..schedule import schedule
from .intops import argmax_first, bsff_fire, cos_goodness, rshr, rsqrt


@dataclass
class QuantModel:
    """Integer parameters of a network plus the config that gives their formats.

    ``weights[l]`` (n_out, n_in) int64 in [wmin, wmax] at scale 2**-wfrac[l];
    ``biases[l]`` (n_out,) at activation scale 2**-afrac (BSFF: (n_out, bsff_k), one per
    tied unit, at pre-activation scale 2**-afrac). OP heads: ``heads[l]``
    (classes, n_l) at 2**-hfrac[l], ``head_biases[l]`` (classes,) at logit scale 2**-lfrac.
    """

    cfg: AccelConfig
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    heads: list[np.ndarray] = field(default_factory=list)
    head_biases: list[np.ndarray] = field(default_factory=list)
    #: the physical layers the network runs with (``physical.PhysicalStack``; not integer
    #: parameters: the golden model drives them when a run is not given recorded responses)
    physical: object = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        cfg = self.cfg
        cfg.check_float64_exact()
        if len(self.weights) != cfg.n_layers or len(self.biases) != cfg.n_layers:
            raise ConfigError(f"model has {len(self.weights)} weight / {len(self.biases)} bias "
                              f"tensors; the config has {cfg.n_layers} layers")
        blo, bhi = -(1 << (cfg.bias_bits - 1)), (1 << (cfg.bias_bits - 1)) - 1
        for i, (w, b, n_in, n_out) in enumerate(zip(self.weights, self.biases, cfg.fan_in, cfg.layers)):
            if w.shape != (n_out, n_in):
                raise ConfigError(f"layer {i + 1} weights have shape {tuple(w.shape)}; "
                                  f"the config needs ({n_out}, {n_in})")
            want = (n_out, cfg.bsff_k) if cfg.bsff else (n_out,)
            if b.shape != want:
                raise ConfigError(f"layer {i + 1} bias has shape {tuple(b.shape)}; the config needs {want}")
            _check_range(f"layer {i + 1} weights", w, cfg.wmin, cfg.wmax)
            _check_range(f"layer {i + 1} bias", b, blo, bhi)
        if cfg.mode == "op":
            if len(self.heads) != cfg.n_layers or len(self.head_biases) != cfg.n_layers:
                raise ConfigError(f"OP mode needs one head per layer ({cfg.n_layers}); got {len(self.heads)}")
            for i, (h, hb, n) in enumerate(zip(self.heads, self.head_biases, cfg.layers)):
                if h.shape != (cfg.classes, n) or hb.shape != (cfg.classes,):
                    raise ConfigError(f"head {i + 1} has shape {tuple(h.shape)}; the config needs "
                                      f"({cfg.classes}, {n})")
                _check_range(f"head {i + 1} weights", h, cfg.wmin, cfg.wmax)
                if cfg.exit_head != "learned":
                    from .lls import lls_basis
                    if not np.array_equal(h, lls_basis(cfg, n)) or np.any(hb != 0):
                        raise ConfigError(f"head {i + 1} is not the {cfg.exit_head} basis with zero bias "
                                          "(the engine generates those heads itself)")
                # the score registers are sized for head biases below HEAD_BIAS_LOGITS logits
                hmax = cfg.head_bias_max
                _check_range(f"head {i + 1} bias", hb, -hmax, hmax,
                             f" (head biases stay below {HEAD_BIAS_LOGITS} logits: the score "
                             f"registers are sized for them)")

    @classmethod
    def random(cls, cfg: AccelConfig, rng: np.random.Generator) -> "QuantModel":
        """Random integer parameters that exercise the whole range (tests, verify without a checkpoint)."""
        ws, bs, hs, hbs = [], [], [], []
        bmax = (1 << (cfg.bias_bits - 1)) - 1
        for n_in, n_out in zip(cfg.fan_in, cfg.layers):
            ws.append(rng.integers(cfg.wmin, cfg.wmax + 1, size=(n_out, n_in), dtype=np.int64))
            if cfg.bsff:            # biases within +-2 (the sigmoid's steep part), one per tied unit
                lim = 2 << cfg.afrac
                bs.append(rng.integers(-lim, lim + 1, size=(n_out, cfg.bsff_k), dtype=np.int64))
            else:
                bs.append(rng.integers(-bmax // 4, bmax // 2 + 1, size=n_out, dtype=np.int64))
            if cfg.mode == "op" and cfg.exit_head != "learned":
                from .lls import lls_basis
                hs.append(lls_basis(cfg, n_out))
                hbs.append(np.zeros(cfg.classes, dtype=np.int64))
            elif cfg.mode == "op":
                hs.append(rng.integers(cfg.wmin, cfg.wmax + 1, size=(cfg.classes, n_out), dtype=np.int64))
                # about +-1.0 at logit scale, within what the score registers are sized for
                hb = min(1 << cfg.lfrac, cfg.head_bias_max)
                hbs.append(rng.integers(-hb, hb + 1, size=cfg.classes, dtype=np.int64))
        physical = None
        if cfg.physical:                # the config's physical layers
            from .physical import build_stack
            physical = build_stack(cfg.physical, cfg.inputs, cfg.layers)
        return cls(cfg, ws, bs, hs, hbs, physical=physical)


def _check_range(name: str, a: np.ndarray, lo: int, hi: int, why: str = "") -> None:
    if a.size and (a.min() < lo or a.max() > hi):
        raise ConfigError(f"{name} hold values {a.min()}..{a.max()} outside {lo}..{hi}{why}")


@dataclass
class GoldenResult:
    """Outputs of one batch. Layers are numbered from 1; scores are cumulative.

    ``layer_scores`` (B, L, classes): cumulative goodness (MP) or logits (OP) of the
    scored layers (``AccelConfig.scored``) after each layer; with ``early_exit=True`` the
    layers after a sample's exit are not computed and hold 0. ``goodness`` (B, L, copies): per-layer sum(h^2) of each copy (MP: copy = label).
    ``activations[l]`` (B, copies, n_l), only with ``probe=True``.
    """

    label: np.ndarray
    exit_layer: np.ndarray
    scores: np.ndarray
    layer_scores: np.ndarray
    goodness: np.ndarray
    label_full: np.ndarray | None
    activations: list[np.ndarray] | None = None
    #: physical layers: per layer, P's quantised response (B, copies, n_p) to each copy
    #: (zeros where a sample had exited; None for a layer without one)
    responses: list[np.ndarray | None] | None = None


class GoldenModel:
    """Batched integer inference (MP or OP) with the hardware's early-exit rule."""

    def __init__(self, qm: QuantModel):
        qm.validate()
        self.qm = qm
        self.cfg = qm.cfg
        # float64 copies for the exact BLAS matmul, made once
        self._w64 = [np.ascontiguousarray(w.T, dtype=np.float64) for w in qm.weights]
        self._h64 = [np.ascontiguousarray(h.T, dtype=np.float64) for h in qm.heads]

    # ------------------------------------------------------------------ primitives
    @staticmethod
    def _matmul(x: np.ndarray, w64_t: np.ndarray) -> np.ndarray:
        """Exact integer x @ w via float64 (bounded by check_float64_exact)."""
        return np.rint(x.astype(np.float64) @ w64_t).astype(np.int64)

    def postprocess(self, acc: np.ndarray, g_in: np.ndarray, layer: int, key: np.ndarray | None = None) -> np.ndarray:
        """Bias, postponed normalisation, ReLU (or |z|), requantise, saturate. ``acc`` (..., n_out),
        ``g_in`` (...) the goodness of the layer's input; returns activation codes. BSFF:
        ``key`` (...) the random source's first word of each copy (:func:`bsff_key`), and
        the output is the count of tied units that fire."""
        cfg = self.cfg
        m, s = rsqrt(g_in, cfg.rsqrt_frac, cfg.rsqrt_index)
        shift = cfg.rsqrt_frac + s + cfg.wfrac[layer] - cfg.afrac
        z = rshr(acc * m[..., None], shift[..., None])
        if cfg.neuron == "abs":
            return np.minimum(np.abs(z + self.qm.biases[layer]), cfg.amax)
        if not cfg.bsff:
            return np.clip(z + self.qm.biases[layer], 0, cfg.amax)
        return bsff_fire(cfg, z, self.qm.biases[layer], key)

    def head(self, h: np.ndarray, g: np.ndarray, layer: int) -> np.ndarray:
        """OP head increment of cumulative logits from layer outputs ``h`` (B, n)."""
        cfg = self.cfg
        acc = self._matmul(h, self._h64[layer])
        m, s = rsqrt(g, cfg.rsqrt_frac, cfg.rsqrt_index)
        shift = cfg.rsqrt_frac + s + cfg.hfrac[layer] - cfg.lfrac
        return rshr(acc * m[:, None], shift[:, None]) + self.qm.head_biases[layer]

    def layer1_acc(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MP layer 1 for all label copies: (acc (B, C, n1), g_in (B, C)).

        With label sharing, W1 @ x_img runs once per sample and ``label_value * W1[:, c]`` is
        added per copy; without it every copy runs the full dot product. The results are
        identical integers (tested); only the work differs.
        """
        cfg = self.cfg
        if cfg.share_layer1:
            img = np.array(x, dtype=np.int64, copy=True)
            img[:, : cfg.classes] = 0
            base = self._matmul(img, self._w64[0])                       # (B, n1)
            w1_lab = self.qm.weights[0][:, : cfg.classes].T             # (C, n1)
            acc = base[:, None, :] + cfg.label_value * w1_lab[None, :, :]
            g = (img * img).sum(axis=1)[:, None] + cfg.label_value ** 2
            return acc, np.broadcast_to(g, acc.shape[:2]).copy()
        copies = embed_all(x, cfg)                                       # (B, C, D)
        b, c, d = copies.shape
        acc = self._matmul(copies.reshape(b * c, d), self._w64[0]).reshape(b, c, -1)
        return acc, (copies * copies).sum(axis=2)

    # ------------------------------------------------------------------ exit rule
    def fires(self, scores: np.ndarray, layer: int) -> np.ndarray:
        """Does the exit comparator fire after ``layer`` (0-based) for these cumulative scores?"""
        cfg = self.cfg
        return fires(scores, layer, cfg.scored, cfg.exit_policy, cfg.thresholds)

    # ------------------------------------------------------------------ inference
    def keys(self, n: int, epoch: int, layer: int) -> np.ndarray | None:
        """BSFF: the random source's first word (:func:`bsff_key`) of every copy (n, copies)
        of ``n`` samples, sample ``s`` in inference ``epoch + s // batch`` since reset, slot
        ``s % batch`` of it (MP copy ``slot * classes + c``, OP row ``slot``). None: ReLU."""
        cfg = self.cfg
        if not cfg.bsff:
            return None
        size = schedule(cfg).batch_size            # samples per inference (MP batch, OP rows)
        s = np.arange(n)
        states = np.asarray(bsff_epoch_states(cfg.bsff_seed, epoch + (n + size - 1) // size)[epoch:],
                            dtype=np.uint64)
        slot = s % size
        copy = slot[:, None] * cfg.copies + np.arange(cfg.copies)[None, :]
        return bsff_key(states[s // size][:, None], layer, copy)

    def run(self, x: np.ndarray, *, early_exit: bool = False, probe: bool = False, epoch: int = 0,
            physical=None, responses: list | None = None) -> GoldenResult:
        """Integer inference of a batch of input codes ``x`` (B, inputs).

        ``early_exit=False`` computes every layer for every sample (full-depth prediction
        and the exit decision from the same pass); ``True`` drops exited samples from
        later layers, as the hardware does. BSFF: the samples are the engine's inferences
        ``epoch, epoch + 1, ...`` since reset, ``batch`` (MP) or ``rows`` (OP) samples each
        (``x`` starts at an inference's first sample); the random bits depend on that
        position only, so both ``early_exit`` settings draw the same bits.

        Physical layers (``cfg.physical``): P's response is an *input* of the integer model,
        as it is of the engine. Either ``physical`` (a ``PhysicalStack``; default: the
        model's) is driven with each block's input in the float model's units (image codes;
        activations at ``2**-afrac``) and its answer read back on the same grid
        (``quantise_response``), or ``responses`` (a previous result's) are replayed.
        The result carries the responses it used.
        """
        cfg = self.cfg
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != cfg.inputs:
            raise ValueError(f"input batch of shape {x.shape}; the config needs (B, {cfg.inputs})")
        if x.size and (x.min() < 0 or x.max() > cfg.amax):
            raise ValueError(f"input codes must lie in 0..{cfg.amax}")
        bsz, nl, ncls = len(x), cfg.n_layers, cfg.classes
        copies = cfg.copies
        layer_scores = np.zeros((bsz, nl, ncls), dtype=np.int64)
        goodness = np.zeros((bsz, nl, copies), dtype=np.int64)
        exit_layer = np.full(bsz, nl, dtype=np.int64)
        done = np.zeros(bsz, dtype=bool)
        acts: list[np.ndarray] | None = [] if probe else None
        active = np.arange(bsz)
        score = np.zeros((bsz, ncls), dtype=np.int64)

        physical = self.qm.physical if physical is None else physical
        if any(cfg.physical_at) and physical is None and responses is None:
            raise ValueError("a network with physical layers needs `physical` (the layers) or `responses`")
        resp: list[np.ndarray | None] = [None] * nl
        h = None
        g = None
        for layer in range(nl):
            if cfg.physical_at[layer]:
                u = (embed_all(x, cfg) if cfg.mode == "mp" else embed_neutral(x, cfg)[:, None, :]) \
                    if layer == 0 else h
                p = self._respond(layer, u, active, bsz, physical, responses)
                resp[layer] = np.zeros((bsz,) + p.shape[1:], dtype=np.int64)
                resp[layer][active] = p
                xin = np.concatenate([p, u], axis=2) if cfg.blocks[layer].concat else p
                b, c, n = xin.shape
                acc = self._matmul(xin.reshape(b * c, n), self._w64[layer]).reshape(b, c, -1)
                g_in = (xin * xin).sum(axis=2)
            elif layer == 0:
                if cfg.mode == "mp":
                    acc, g_in = self.layer1_acc(x)
                else:
                    xin = embed_neutral(x, cfg)[:, None, :]
                    acc = self._matmul(xin[:, 0], self._w64[0])[:, None, :]
                    g_in = (xin * xin).sum(axis=2)
            else:
                b, c, n = h.shape
                acc = self._matmul(h.reshape(b * c, n), self._w64[layer]).reshape(b, c, -1)
                g_in = g
            key = self.keys(bsz, epoch, layer)
            h = self.postprocess(acc, g_in, layer, None if key is None else key[active])   # (b, copies, n_l)
            g = (h * h).sum(axis=2)                           # (b, copies)
            goodness[active, layer] = g
            if not cfg.scored[layer]:
                pass                                          # a skipped layer adds nothing
            elif cfg.mode == "mp":
                score[active] += g if cfg.goodness == "sq" else cos_goodness(cfg, h, g, layer)
            else:
                score[active] += self.head(h[:, 0], g[:, 0], layer)
            layer_scores[active, layer] = score[active]
            if probe:
                full = np.zeros((bsz,) + h.shape[1:], dtype=np.int64)
                full[active] = h
                acts.append(full)
            fire = self.fires(score[active], layer) & ~done[active]
            exit_layer[active[fire]] = layer + 1
            done[active[fire]] = True
            if early_exit and layer < nl - 1:
                keep = ~fire
                active, h, g = active[keep], h[keep], g[keep]
                if not len(active):
                    break

        idx = exit_layer - 1
        final = layer_scores[np.arange(bsz), idx]
        label = argmax_first(final)
        label_full = None if early_exit else argmax_first(layer_scores[:, -1])
        return GoldenResult(label=label, exit_layer=exit_layer, scores=final,
                            layer_scores=layer_scores, goodness=goodness,
                            label_full=label_full, activations=acts,
                            responses=resp if any(cfg.physical_at) else None)

    def _respond(self, layer: int, u: np.ndarray, active: np.ndarray, bsz: int, physical, responses) -> np.ndarray:
        """P's quantised response (b, copies, n_p) to the block inputs ``u`` (b, copies, n_u)."""
        cfg = self.cfg
        n_p = cfg.blocks[layer].n_p
        if responses is not None:
            r = np.asarray(responses[layer], dtype=np.int64)
            if r.shape != (bsz, u.shape[1], n_p):
                raise ValueError(f"recorded responses of layer {layer + 1} have shape {r.shape}; "
                                 f"expected {(bsz, u.shape[1], n_p)}")
            r = r[active]
            if r.size and (r.min() < 0 or r.max() > cfg.amax):
                raise ValueError(f"recorded responses must lie in 0..{cfg.amax}")
            return r
        from .physical import quantise_response, response_frac
        b, c, n = u.shape
        frac = response_frac(cfg, layer)             # the block input's grid, both ways
        y = physical(layer, u.reshape(b * c, n).astype(np.float64) * 2.0 ** -frac)
        return quantise_response(y, frac, cfg.amax).reshape(b, c, n_p)
