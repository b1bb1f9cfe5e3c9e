"""Design spaces: a TOML file of fixed settings, axes and a search strategy.

    [workload]                      # what every design is measured on
    dataset = "digits"              # mnist | fashion-mnist | digits | ecg | wfdb:FOLDER | PATH
    layers = "2x64"                 # default network (an axis may vary it)
    limit = 300                     # test samples for accuracy, latency and energy
    val_limit = 10000               # validation samples for the exit thresholds
    # checkpoint = "runs/x.ckpt"    # use a trained checkpoint instead of training (one shape)
    toggle_samples = 4              # inferences whose toggles drive the energy model

    [recipe]                        # training recipe (ffaccel.model.recipe.TrainRecipe keys;
    epochs = 10                     # absent keys take the recipe's defaults); one training
                                    # per network shape, cached

    [base]                          # AccelConfig fields shared by every design
    mode = "mp"

    [axes]                          # every combination is a design (grid), or the search range (nsga2)
    rows = [5, 10]
    cols = [8, 16]
    wbits = [4, 8]
    k = [0.5, 1.0, 2.0]             # LightFF exit knob
    weight_mem = ["sram", "dram"]
    "recipe.theta" = [4.0, 16.0]    # recipe.FIELD axes vary the training (one network each)

    [strategy]
    kind = "grid"                   # grid | nsga2
    trials = 40                     # nsga2 only
    objectives = ["accuracy:max", "energy_pj:min", "latency_cycles:min", "area_cells:min"]

    fidelity = [2, 10]              # optional, grid only: successive halving over training
    keep = 0.34                     # epochs; every design trains its network for 2 epochs,
                                    # the best `keep` of them (whole non-dominated fronts
                                    # first) go on to 10; results and the front are the
                                    # last rung's

    [fpga]                          # optional: each design also on this FPGA (ffaccel.fpga.model,
    device = "LFE5U-85F"            # calibrated on place-and-route runs): fpga_luts, fpga_ffs,
                                    # fpga_dsps, fpga_brams, fmax_mhz, fpga_fits, and latency_us
                                    # at the predicted fmax instead of clock_mhz
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import FFAccelError
from ..config import AccelConfig, ConfigError, parse_error_text, parse_layers
from ..model.recipe import FF_ALGORITHM, LLS_ALGORITHM, TrainRecipe

METRICS = ("accuracy", "balanced_accuracy", "energy_pj", "latency_cycles", "cycles_per_sample", "latency_us",
           "area_cells", "area_mm2", "utilisation", "macs_per_sample", "mean_exit_layer")
#: the metrics a space with an [fpga] section adds (ffaccel.fpga.model)
FPGA_METRICS = ("fpga_luts", "fpga_ffs", "fpga_dsps", "fpga_brams", "fmax_mhz", "fpga_fits")
FPGA_KEYS = ("device",)
WORKLOAD_KEYS = {"dataset": str, "layers": str, "limit": int, "val_limit": int, "toggle_samples": int,
                 "checkpoint": str}
WORKLOAD_DEFAULTS = {"layers": "2x64", "limit": 300, "val_limit": 10000, "toggle_samples": 4}
EXTRA_AXES = ("k", "layers")          # axes that are not AccelConfig fields
#: Axes named ``recipe.FIELD`` vary the training recipe (e.g. ``"recipe.theta" = [4.0, 16.0]``).
RECIPE_AXIS = "recipe."
# config keys a space may not set in [base] or [axes]: the workload fixes them (layers in
# [workload], inputs and classes from the data set), or they are internal
FIXED_KEYS = {"layers": "set layers in [workload] (or as an axis)", "inputs": "the data set fixes inputs",
              "classes": "the data set fixes classes", "schema": "an internal key",
              "exit_k": "the exit knob is the axis k",
              "physical": "the DSE explores digital designs: a physical layer's noise and drift make its "
                          "accuracy differ from run to run, so its points would not reproduce (train, eval, "
                          "verify, perf and energy take --physical)"}
STRATEGY_KEYS = ("kind", "objectives", "trials", "fidelity", "keep")
#: The point key of a design's rung under multi-fidelity search: its training epochs.
FIDELITY_KEY = "fidelity_epochs"
#: The most designs a grid may hold (each is evaluated: a bigger grid is a mistake, or a
#: job for nsga2).
MAX_GRID = 100_000


@dataclass(frozen=True, eq=False)
class Space:
    name: str
    workload: dict
    base: dict
    axes: dict
    kind: str
    trials: int
    objectives: tuple
    recipe: TrainRecipe
    #: the [fpga] section ({} without one): the device whose model adds FPGA_METRICS
    fpga: dict
    #: multi-fidelity rungs: training epochs per rung (() = one rung at the recipe's), and
    #: the fraction of a rung's designs promoted to the next
    fidelity: tuple = ()
    keep: float = 1.0
    # what the evaluations depend on beyond the TOML text: the checkpoint's bytes and the
    # training algorithm; a replaced checkpoint or a new algorithm gives new point keys
    fingerprint: str = ""

    @property
    def metrics(self) -> tuple:
        """What each evaluation reports: METRICS, and FPGA_METRICS with an [fpga] section."""
        return METRICS + (FPGA_METRICS if self.fpga else ())

    def grid(self) -> list[dict]:
        keys = sorted(self.axes)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(self.axes[k] for k in keys))]

    def recipe_for(self, point: dict) -> TrainRecipe:
        """The recipe a design trains with: the space's with the design's ``recipe.*`` axes,
        under multi-fidelity at its rung's epochs (``min_steps`` scaled by the same
        fraction of the last rung's)."""
        r = self.recipe
        over = {k[len(RECIPE_AXIS):]: v for k, v in point.items() if k.startswith(RECIPE_AXIS)}
        if over:
            r = r.replace(**over)
        if FIDELITY_KEY not in point:
            return r
        e = point[FIDELITY_KEY]
        return r.replace(epochs=e, min_steps=r.min_steps * e // self.fidelity[-1])

    def design(self, point: dict) -> dict:
        """The design of a point, without its rung."""
        return {k: v for k, v in point.items() if k != FIDELITY_KEY}

    def point_of(self, row: dict) -> dict:
        """The point (design and, under multi-fidelity, rung) of a result row."""
        point = {k: row[k] for k in self.axes}
        if FIDELITY_KEY in row:
            point[FIDELITY_KEY] = row[FIDELITY_KEY]
        return point

    def point_key(self, point: dict) -> str:
        """Hash of everything an evaluation depends on (design and workload) and of what it
        reports (the metric list: a store from before a metric was added evaluates again
        instead of lacking it)."""
        blob = {"point": point, "base": self.base, "workload": self.workload,
                "recipe": self.recipe.key(), "fingerprint": self.fingerprint,
                "metrics": list(self.metrics)}
        if self.fpga:                       # (keys of spaces without one stay as they were)
            blob["fpga"] = self.fpga
        blob = json.dumps(blob, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def config(self, point: dict) -> AccelConfig:
        data = dict(self.base)
        data.update({k: v for k, v in point.items()
                     if k not in EXTRA_AXES and k != FIDELITY_KEY and not k.startswith(RECIPE_AXIS)})
        data["layers"] = parse_layers(str(point.get("layers", self.workload["layers"])))
        if "k" in point:
            k = point["k"]
            if isinstance(k, bool) or not isinstance(k, (int, float)) or not -1e300 < k < 1e300:
                raise ConfigError(f"k={k!r} must be a number in the range of --k")
            data["exit_k"] = float(k)
        return AccelConfig.from_dict(data)


def _fpga_section(sec: dict | None) -> dict:
    """The [fpga] section, checked: a device the model knows (an ECP5)."""
    if sec is None:
        return {}
    from ..fpga.devices import lookup
    unknown = sorted(set(sec) - set(FPGA_KEYS))
    if unknown:
        raise FFAccelError(f"--space: unknown fpga key {unknown[0]!r} (allowed: {', '.join(FPGA_KEYS)})")
    dev = sec.get("device")
    if not isinstance(dev, str):
        raise FFAccelError(f"--space: [fpga] needs device = \"NAME\" (a string), not {dev!r}")
    try:
        d, _, _ = lookup(dev)
    except FFAccelError as e:
        raise FFAccelError(f"--space: [fpga] {str(e).removeprefix('--')}") from None
    return {"device": d.name}


def _fingerprint(workload: dict) -> str:
    """sha256 of the training algorithms and of the checkpoint file's bytes (when one is
    given and exists; a missing one fails later, in the evaluation, with its own message)."""
    h = hashlib.sha256((FF_ALGORITHM + LLS_ALGORITHM).encode())
    ckpt = workload.get("checkpoint")
    if ckpt:
        path = Path(ckpt)
        if path.is_file():
            with open(path, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()[:20]


def load_space(path: str | Path) -> Space:
    p = Path(path)
    if not p.is_file():
        raise FFAccelError(f"--space {str(p)!r} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except (ValueError, RecursionError, OSError) as e:     # TOMLDecodeError, 5000-digit integers, nesting
        why = parse_error_text(e)
        raise FFAccelError(f"--space {str(p)!r} does not parse as TOML: {why}") from None
    unknown = set(data) - {"workload", "recipe", "base", "axes", "strategy", "fpga"}
    if unknown:
        raise FFAccelError(f"--space: unknown section [{sorted(unknown)[0]}] "
                           "(allowed: workload, recipe, base, axes, strategy, fpga)")
    for sec, v in data.items():
        if not isinstance(v, dict):
            raise FFAccelError(f"--space: {sec} must be a [{sec}] table of key = value lines, not a "
                               f"{type(v).__name__}")
    recipe = TrainRecipe.from_dict(data.get("recipe", {}), where="--space: [recipe]")
    wl = dict(WORKLOAD_DEFAULTS)
    for k, v in data.get("workload", {}).items():
        if k in recipe.to_dict() and k not in WORKLOAD_KEYS:
            raise FFAccelError(f"--space: workload key {k!r} is a training-recipe key: "
                               "put it in the [recipe] section")
        if k not in WORKLOAD_KEYS:
            raise FFAccelError(f"--space: unknown workload key {k!r} (allowed: {', '.join(WORKLOAD_KEYS)})")
        typ = WORKLOAD_KEYS[k]
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise FFAccelError(f"--space: workload {k}={v!r} must be {typ.__name__}")
        wl[k] = v
    for k in ("limit", "val_limit", "toggle_samples"):
        if wl[k] < 1:
            raise FFAccelError(f"--space: workload {k}={wl[k]} out of range (allowed: >= 1)")
    if "dataset" not in wl:
        raise FFAccelError("--space: [workload] needs a dataset")
    if "checkpoint" in wl and not wl["checkpoint"].strip():
        raise FFAccelError("--space: workload checkpoint is empty (give a path, or leave the key out to train)")
    axes = data.get("axes", {})
    if not axes:
        raise FFAccelError("--space: [axes] is empty: nothing to explore")
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise FFAccelError(f"--space: axis {k!r} must be a non-empty list")
    base = dict(data.get("base", {}))
    for sec, keys in (("base", base), ("axes", axes)):
        for k in keys:
            if k in FIXED_KEYS and not (sec == "axes" and k == "layers"):
                raise FFAccelError(f"--space: [{sec}] {k}: {FIXED_KEYS[k]}")
    n_grid = 1
    for v in axes.values():
        n_grid *= len(v)
    if n_grid > MAX_GRID:
        raise FFAccelError(f"--space: the axes make a grid of {n_grid:,d} designs (at most {MAX_GRID:,d}; "
                           "use fewer values, or kind = \"nsga2\" with a trial budget)")
    st = data.get("strategy", {})
    unknown = sorted(set(st) - set(STRATEGY_KEYS))
    if unknown:
        raise FFAccelError(f"--space: unknown strategy key {unknown[0]!r} (allowed: {', '.join(STRATEGY_KEYS)})")
    kind = st.get("kind", "grid")
    if kind not in ("grid", "nsga2"):
        raise FFAccelError(f"--space: strategy kind {kind!r} (allowed: grid, nsga2)")
    fpga = _fpga_section(data.get("fpga"))
    metrics = METRICS + (FPGA_METRICS if fpga else ())
    objectives = st.get("objectives", ["accuracy:max", "energy_pj:min", "latency_cycles:min", "area_cells:min"])
    if not isinstance(objectives, list):
        raise FFAccelError(f"--space: strategy objectives={objectives!r} must be a list of METRIC:min|max")
    objectives = tuple(objectives)
    if not objectives:
        raise FFAccelError("--space: strategy objectives is empty (give at least one METRIC:min|max)")
    for o in objectives:
        if not isinstance(o, str):
            raise FFAccelError(f"--space: objective {o!r} must be a string METRIC:min|max")
        name, _, d = o.partition(":")
        if name in FPGA_METRICS and not fpga:
            raise FFAccelError(f"--space: objective {o!r} needs an [fpga] section with a device")
        if name not in metrics or d not in ("min", "max"):
            raise FFAccelError(f"--space: objective {o!r} must be METRIC:min|max with METRIC in {', '.join(metrics)}")
    names = [o.partition(":")[0] for o in objectives]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise FFAccelError(f"--space: objective {dup!r} is given twice")
    if kind == "grid" and "trials" in st:
        raise FFAccelError("--space: strategy trials applies to kind = \"nsga2\" (a grid evaluates every design)")
    trials = st.get("trials", 40)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise FFAccelError(f"--space: strategy trials={trials!r} must be a positive integer")
    fidelity = st.get("fidelity", [])
    if not isinstance(fidelity, list) or any(isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= 100_000
                                             for e in fidelity):
        raise FFAccelError(f"--space: strategy fidelity={fidelity!r} must be a list of training epochs (1..100000)")
    if fidelity and (len(fidelity) < 2 or sorted(set(fidelity)) != fidelity):
        raise FFAccelError(f"--space: strategy fidelity={fidelity!r} must be at least two epoch budgets, rising")
    if fidelity and kind != "grid":
        raise FFAccelError("--space: strategy fidelity applies to kind = \"grid\" (successive halving of its designs)")
    if fidelity and "checkpoint" in wl:
        raise FFAccelError("--space: strategy fidelity trains networks at rising epochs: it needs no workload checkpoint")
    if "keep" in st and not fidelity:
        raise FFAccelError("--space: strategy keep applies with a fidelity list")
    keep = st.get("keep", 1 / 3)
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise FFAccelError(f"--space: strategy keep={keep!r} must be a fraction in (0, 1]")
    space = Space(p.stem, wl, base, axes, kind, trials, objectives, recipe, fpga, fidelity=tuple(fidelity),
                  keep=float(keep), fingerprint=_fingerprint(wl))
    for k in axes:
        name = k[len(RECIPE_AXIS):]
        if k.startswith(RECIPE_AXIS) and name not in recipe.to_dict():
            raise FFAccelError(f"--space: axis {k!r}: {name!r} is not a recipe key "
                               f"(allowed: {', '.join(recipe.to_dict())})")
        if k.startswith(RECIPE_AXIS) and "checkpoint" in wl:
            raise FFAccelError(f"--space: axis {k!r} varies the training, but the workload uses a checkpoint")
        if k.startswith(RECIPE_AXIS) and fidelity and name in ("epochs", "min_steps"):
            raise FFAccelError(f"--space: axis {k!r}: the strategy's fidelity sets the epochs")
    # every design of the space must be a valid config and recipe: fail now, not after an hour
    shifts = set()
    try:
        for point in space.grid():
            space.config(point)
            shifts.add(space.recipe_for(point).shift)
    except ConfigError as e:
        raise FFAccelError(f"--space: a design is invalid: {e}") from None
    except FFAccelError as e:              # a RecipeError
        raise FFAccelError(f"--space: a design's {e}") from None
    shifts -= {0}
    if shifts and "checkpoint" not in wl:
        # shift augmentation needs images: ask the data set now, not at the first training
        from ..data import load_dataset
        from ..model.augment import shifter
        shape = load_dataset(wl["dataset"]).image_shape
        try:
            for v in sorted(shifts):
                shifter(recipe.replace(shift=v), shape)
        except FFAccelError as e:
            raise FFAccelError(f"--space: a design's {e}") from None
    return space
