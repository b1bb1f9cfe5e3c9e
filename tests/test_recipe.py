"""The training recipe (one object, the only defaults) and the score mask chosen on the
validation split (float model, golden model, exit rule and MAC accounting honour it)."""

import dataclasses
import inspect

import numpy as np
import pytest

from ffaccel.config import AccelConfig, ConfigError
from ffaccel.model.exits import apply_exit, cumulative, exit_report, scaled_nll, select_scored
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.model.recipe import RecipeError, TrainRecipe


# ---------------------------------------------------------------- the recipe object
def test_recipe_fields_carry_meaning_and_defaults():
    fields = {f.name: f for f in dataclasses.fields(TrainRecipe)}
    assert {"epochs", "min_steps", "lr", "theta", "batch", "hard_negatives", "decay", "head_epochs",
            "head_lr", "lls_temperature", "score_layers", "qat_epochs", "qat_lr", "bsff_target", "bsff_gain",
            "cos_theta", "cos_lr", "shift", "seed", "limit"} == set(fields)
    for name, default, text, unit in TrainRecipe.describe():
        assert text and default == fields[name].default
    r = TrainRecipe()
    assert TrainRecipe.from_dict(r.to_dict()) == r
    assert TrainRecipe.from_dict({"lr": 1}).lr == 1.0 and isinstance(TrainRecipe(theta=4).theta, float)


def test_fine_tuning_fields_are_keyed_only_when_it_is_on():
    """A recipe without QAT hashes as before QAT existed (cached checkpoints, DSE points stay
    valid), whatever its qat_lr; one that fine-tunes hashes both fields."""
    r = TrainRecipe(qat_epochs=0)
    assert r.key() == {k: v for k, v in r.to_dict().items()
                       if k not in ("qat_epochs", "qat_lr", "bsff_target", "bsff_gain", "cos_theta", "cos_lr", "shift")}
    assert r.replace(shift=1).key()["shift"] == 1                     # augmentation joins when on
    assert TrainRecipe().key()["qat_epochs"] == 2                     # the default fine-tunes
    assert r.replace(qat_lr=0.001).key() == r.key()
    # BSFF's loss fields join the key when they leave their defaults
    assert r.replace(bsff_gain=5.0).key()["bsff_gain"] == 5.0 and "bsff_target" not in r.replace(bsff_gain=5.0).key()
    assert r.replace(cos_theta=5.0).key()["cos_theta"] == 5.0          # so does the cosine loss's
    q = r.replace(qat_epochs=2)
    assert (q.key()["qat_epochs"], q.key()["qat_lr"]) == (2, 0.0003)
    assert q.replace(qat_lr=0.001).key() != q.key()


@pytest.mark.parametrize("bad,fragment", [
    ({"epochs": 0}, "epochs=0 out of range"),
    ({"qat_epochs": -1}, "qat_epochs=-1 out of range"),
    ({"qat_lr": 0.0}, "qat_lr=0.0 out of range"),
    ({"lr": 0.0}, "lr=0.0 out of range"),
    ({"lr": float("nan")}, "lr=nan out of range"),
    ({"theta": -1}, "theta=-1.0 out of range"),
    ({"hard_negatives": 1.5}, "hard_negatives=1.5"),
    ({"batch": 2.5}, "batch=2.5 must be int"),
    ({"decay": 1}, "decay=1 must be bool"),
    ({"epochs": True}, "epochs=True must be int"),
    ({"score_layers": "some"}, "score_layers='some'"),
    ({"thetta": 2}, "unknown key 'thetta'"),
])
def test_recipe_refuses_bad_values_with_one_line(bad, fragment):
    with pytest.raises(RecipeError, match=fragment.replace("(", r"\(").replace("[", r"\[")) as e:
        TrainRecipe.from_dict(bad)
    assert "\n" not in str(e.value)


def test_min_steps_lengthens_small_data_only():
    r = TrainRecipe(batch=100)                       # 10 epochs, >= 5000 steps of 100
    assert r.effective_epochs(55_000) == 10          # MNIST: 550 steps per epoch
    assert r.effective_epochs(1_079) == 455          # digits: 11 steps per epoch
    assert r.replace(min_steps=0).effective_epochs(1_079) == 10
    assert r.replace(head_epochs=3, min_steps=0).effective_head_epochs(55_000) == 3
    assert r.replace(head_epochs=3).effective_head_epochs(55_000) == 10      # min_steps applies too
    assert TrainRecipe().effective_epochs(1_079) == 228                      # the default batch, 50
    assert r.effective_head_epochs(55_000) == 10


def test_trainers_take_a_recipe_and_hold_no_defaults():
    """No library trainer has hyper-parameter defaults of its own: they take a recipe."""
    from ffaccel.model import ff, training
    for fn in (ff.train_ff, ff.train_heads, ff.train_lls, training.fit):
        params = inspect.signature(fn).parameters
        assert params["recipe"].default is inspect.Parameter.empty, fn.__name__
        for name in ("lr", "theta", "batch", "epochs", "seed", "hard_negatives", "temperature"):
            assert name not in params, (fn.__name__, name)
    with pytest.raises(TypeError, match="TrainRecipe"):
        training.fit(None, None, {"epochs": 1})


def test_train_flags_are_the_recipe_fields():
    """``ffaccel.train``'s flags are made from the recipe: same names, defaults in help, and
    a run without recipe flags gets exactly ``TrainRecipe()``."""
    from ffaccel.cli import recipe_from_args
    from ffaccel.train import build_parser
    p = build_parser()
    args = p.parse_args(["--dataset", "digits", "--out", "x.ckpt"])
    assert recipe_from_args(args) == TrainRecipe()
    args = p.parse_args(["--dataset", "digits", "--out", "x.ckpt", "--theta", "4", "--no-decay",
                         "--score-layers", "all", "--min-steps", "0"])
    assert recipe_from_args(args) == TrainRecipe(theta=4.0, decay=False, score_layers="all", min_steps=0)
    text = p.format_help()
    for name, default, _, _ in TrainRecipe.describe():
        assert "--" + name.replace("_", "-") in text


# ---------------------------------------------------------------- choosing the scored layers
def _scores(rng, n=400, layers=3, classes=4, good=(True, True, False)):
    """Per-layer scores: informative layers put +3 on the true class, harmful ones a
    large score on a wrong class."""
    y = rng.integers(0, classes, size=n)
    own = rng.normal(size=(n, layers, classes))
    for l, ok in enumerate(good):
        if ok:
            own[np.arange(n), l, y] += 3.0
        else:
            own[np.arange(n), l, (y + 1) % classes] += 6.0
    return own, y


def test_select_scored_drops_a_harmful_layer_and_keeps_useful_ones():
    rng = np.random.default_rng(0)
    own, y = _scores(rng)
    assert select_scored(own, y) == (1, 1, 0)
    own, y = _scores(rng, good=(True, False, True))
    assert select_scored(own, y) == (1, 0, 1)
    own, y = _scores(rng, good=(True, True, True))
    assert select_scored(own, y) == (1, 1, 1)           # nothing to gain: every layer


def test_select_scored_keeps_every_layer_on_a_tie():
    """Identical layers: any subset scores the same (the temperature absorbs the sum's
    scale), so every layer stays."""
    rng = np.random.default_rng(1)
    own, y = _scores(rng, layers=1, good=(True,))
    own = np.repeat(own, 3, axis=1)
    assert select_scored(own, y) == (1, 1, 1)


def test_scaled_nll_is_the_best_temperature_and_scale_free():
    rng = np.random.default_rng(3)
    own, y = _scores(rng, layers=1, good=(True,))
    s = own[:, 0]
    v = scaled_nll(s, y)
    # a brute-force search over the temperature finds nothing lower
    betas = np.exp(np.linspace(-8, 4, 2001))
    z = s[None] * betas[:, None, None]
    z = z - z.max(-1, keepdims=True)
    grid = (np.log(np.exp(z).sum(-1)) - z[:, np.arange(len(y)), y]).mean(-1)
    assert v <= grid.min() + 1e-9 and v >= grid.min() - 1e-4
    assert abs(scaled_nll(1000.0 * s, y) - v) < 1e-9                 # MP sums and logits alike
    assert abs(scaled_nll(np.zeros_like(s), y) - np.log(s.shape[1])) < 1e-12
    noise = rng.normal(size=s.shape)
    assert scaled_nll(noise, y) > v + 0.5                           # an uninformative score is worse


def test_select_scored_reads_confidence_not_only_the_argmax():
    """Two layers with the same argmax on every sample: layer 2 adds confident wrong votes
    that flip no argmax of layer 1 + 2 here but make the sum's probabilities worse, and
    some confidently right ones. The count of correct samples cannot tell {1} from {1, 2};
    the NLL can, in both directions."""
    rng = np.random.default_rng(4)
    n, c = 600, 4
    y = rng.integers(0, c, size=n)
    base = rng.normal(size=(n, c))
    base[np.arange(n), y] += 4.0
    own = np.stack([base, 0.2 * base], axis=1)            # layer 2 alone = a scaled layer 1
    assert select_scored(own, y) == (1, 1)                # equal: both stay
    hurt = own.copy()
    hurt[np.arange(n), 1, (y + 1) % c] += 0.8 * (hurt[np.arange(n), 0, y] - hurt[np.arange(n), 0, (y + 1) % c]).clip(0)
    acc = lambda m: int((np.einsum("blc,l->bc", hurt, np.asarray(m, float)).argmax(1) == y).sum())
    assert acc((1, 0)) == acc((1, 1))                     # no argmax changes...
    assert select_scored(hurt, y) == (1, 0)               # ...but the sum is less sure of the truth


def test_select_scored_beyond_eight_layers_eliminates_backwards():
    rng = np.random.default_rng(2)
    good = (True,) * 11 + (False,)
    own, y = _scores(rng, layers=12, good=good)
    own[np.arange(len(y)), -1, (y + 1) % 4] += 100.0      # outweighs the 11 good layers together
    mask = select_scored(own, y)
    assert mask[-1] == 0 and sum(mask) >= 1


def test_mask_in_config_is_validated_and_canonical():
    cfg = AccelConfig(inputs=10, classes=3, layers=(4, 4, 4))
    assert cfg.replace(score_mask=(1, 1, 1)).score_mask == ()
    assert cfg.replace(score_mask=[1, 0, 1]).decision_layer == 3
    assert cfg.replace(score_mask=(1, 1, 0)).decision_layer == 2
    for bad, frag in (((1, 0), "3 entries|expected 3"), ((0, 0, 0), "every layer"), ((1, 2, 1), "score_mask\\[1\\]")):
        with pytest.raises(ConfigError, match=frag):
            cfg.replace(score_mask=bad)


def test_exit_rule_with_a_mask():
    """No exit after a skipped layer; the last scored layer decides; MACs of full depth end
    there."""
    rng = np.random.default_rng(3)
    own = rng.integers(0, 50, size=(64, 3, 4)).astype(np.int64)
    scored = (True, False, True)
    sc = cumulative(own, scored)
    assert (sc[:, 1] == sc[:, 0]).all() and (sc[:, 2] == own[:, 0] + own[:, 2]).all()
    el, lab = apply_exit(sc, "max", [-10 ** 6, -10 ** 6], scored)     # every rule fires
    assert set(el.tolist()) == {1}
    el, _ = apply_exit(sc, "max", [10 ** 6, -10 ** 6], scored)        # layer 2 skipped: no exit there
    assert set(el.tolist()) == {3}
    el, _ = apply_exit(cumulative(own, (True, True, False)), "max", [10 ** 6, 10 ** 6], (True, True, False))
    assert set(el.tolist()) == {2}                                     # decision layer 2
    cfg = AccelConfig(inputs=10, classes=4, layers=(5, 6, 7), score_mask=(1, 1, 0))
    rep = exit_report(np.full(8, 2), np.zeros(8, int), np.zeros(8, int), np.zeros(8, int), cfg)
    assert rep["macs_full"] == 6 * 5 + 4 * 5 + 4 * 5 * 6 and rep["mac_reduction"] == 1.0
    assert rep["scored_layers"] == [1, 2]


@pytest.mark.parametrize("mode", ["mp", "op"])
def test_golden_model_honours_the_mask(mode):
    """Golden scores equal the masked sum of the unmasked model's per-layer scores; no
    sample runs past the decision layer."""
    from ffaccel.workload import informative_config, spread_thresholds
    rng = np.random.default_rng(4)
    cfg = informative_config(rng, inputs=14, classes=3, layers=(6, 5, 4), rows=2, cols=3, abits=5, wbits=5,
                             mode=mode, exit_policy="max")
    qm = QuantModel.random(cfg, rng)
    x = rng.integers(0, cfg.amax + 1, size=(12, cfg.inputs))
    full = GoldenModel(qm).run(x).layer_scores
    own = np.diff(full, axis=1, prepend=np.zeros_like(full[:, :1]))
    for mask in ((1, 0, 1), (0, 1, 0), (1, 1, 0)):
        m = QuantModel(cfg.replace(score_mask=mask), qm.weights, qm.biases, qm.heads, qm.head_biases)
        res = GoldenModel(m).run(x)
        assert (res.layer_scores == cumulative(own, m.cfg.scored)).all()
        m = spread_thresholds(m, x)
        ee = GoldenModel(m).run(x, early_exit=True)
        assert ee.exit_layer.max() <= m.cfg.decision_layer
        assert (ee.label == GoldenModel(m).run(x).label).all()


def test_fit_chooses_the_mask_and_stores_the_recipe(digits):
    """A fast recipe on digits with score_layers=auto: the checkpoint's config carries the
    mask fit chose, the meta the recipe, and the float scores follow the mask."""
    from ffaccel.model.embed import input_codes
    from ffaccel.model.training import fit
    cfg = AccelConfig(inputs=digits.inputs, classes=digits.classes, layers=(16, 16, 16))
    recipe = TrainRecipe(epochs=6, min_steps=0, lr=0.03, theta=2.0, batch=32, hard_negatives=0.5)
    net, qcfg, meta = fit(digits, cfg, recipe, progress=False)
    assert meta["recipe"] == recipe.to_dict() and meta["train"]["epochs"] == 6
    assert meta["train"]["scored_layers"] == [i + 1 for i, v in enumerate(qcfg.scored) if v]
    assert net.cfg.score_mask == qcfg.score_mask
    assert meta["train"]["val_accuracy_scored"] >= meta["train"]["val_accuracy_all_layers"]
    xva = input_codes(digits.x_val, cfg)
    own = net.layer_scores(xva)
    assert np.allclose(net.scores(xva), cumulative(own, qcfg.scored))
    # "all" keeps every layer whatever the validation split says
    _, qall, _ = fit(digits, cfg, recipe.replace(score_layers="all"), progress=False)
    assert qall.score_mask == ()
