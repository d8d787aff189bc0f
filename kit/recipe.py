"""Recipes: TOML files naming the steps of a compression run, validated with precise errors.

Steps run in this order, each optional: layer_prune -> structured -> regularize -> prune -> finetune -> lowrank ->
cluster -> quantize -> convert; `metrics` sets what is measured. A wrong key, type or value is reported
with the line and the key, and what is allowed.
"""
from __future__ import annotations

import difflib
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from kit.core.errors import RecipeError

RECIPE_DIR = Path(__file__).parent / "recipes"
QUANT_MODES = ("none", "dynamic", "float16", "int8", "qat")
GRANULARITIES = ("unstructured", "block", "2:4")
RUNTIMES = ("litert", "litert-builtin", "tflm")
PRUNE_METHODS = ("magnitude", "soft", "learned", "iterative")
MASK_GRANULARITIES = ("unstructured", "filter")  # granularities of the soft and learned methods
IMPORTANCE = ("magnitude", "gradient", "taylor", "fisher")
SCOPES = ("layer", "global")
THRESHOLD_KINDS = ("absolute", "relative", "score")
GATES = ("ste", "sigmoid")
REGULARIZERS = ("l1", "l2", "elasticnet", "group_lasso")
#: prune keys each method reads besides final_sparsity, skip, layers and method itself
_METHOD_KEYS = {
    "magnitude": {"schedule", "initial_sparsity", "begin_step", "end_step", "begin_epoch", "end_epoch", "frequency",
                  "granularity", "block"},
    "soft": {"schedule", "initial_sparsity", "begin_step", "end_step", "begin_epoch", "end_epoch", "frequency",
             "granularity", "scope"},
    "learned": {"granularity", "scope", "gate", "mask_epochs", "mask_learning_rate"},
    "iterative": {"scope", "importance", "cycles", "threshold", "threshold_kind"},
}


@dataclass
class LayerOverride:
    skip: bool = False
    initial_sparsity: float | None = None
    final_sparsity: float | None = None
    granularity: str | None = None
    block: tuple[int, int] | None = None


@dataclass
class PruneStep:
    schedule: str = "polynomial"
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.8
    begin_step: int | None = None
    end_step: int | None = None
    begin_epoch: float | None = None
    end_epoch: float | None = None
    frequency: int | None = None  # None: derived from the fine-tune length
    granularity: str = "unstructured"
    block: tuple[int, int] = (1, 4)  # rows x cols of the runtime's [out, in] weight layout
    skip: list[str] = field(default_factory=list)
    layers: dict[str, LayerOverride] = field(default_factory=dict)
    method: str = "magnitude"  # magnitude (TF-MOT) | soft | learned | iterative
    scope: str = "layer"  # soft/learned/iterative: rank per layer or over all layers together
    importance: str = "magnitude"  # iterative: magnitude | gradient | taylor | fisher
    cycles: int = 3  # iterative: prune-retrain rounds (1 = one-shot)
    threshold: float | None = None  # iterative: prune under a threshold instead of to final_sparsity
    threshold_kind: str = "relative"  # absolute | relative (x RMS of the layer) | score
    gate: str = "ste"  # learned: ste | sigmoid
    mask_epochs: int = 4  # learned: epochs of mask training before the fixed-mask fine-tune
    mask_learning_rate: float | None = None  # learned: None = chosen from the ramp length


@dataclass
class RegularizeStep:
    kind: str = "l1"
    l1: float = 0.0
    l2: float = 0.0
    group: float = 0.0
    epochs: int = 4
    learning_rate: float | None = None  # None: the fine-tune learning rate
    threshold: float = 1e-3  # |w| under this counts as near zero in the report
    skip: list[str] = field(default_factory=list)


@dataclass
class LayerPruneStep:
    blocks: int = 1  # residual / separable blocks to remove, cheapest first
    max_cost: float | None = None  # stop before a block whose removal costs more (loss increase)
    samples: int = 1000  # held-out training samples that measure the cost
    epochs: int = 2  # recovery fine-tune after the removal (0 = none)


@dataclass
class StructuredStep:
    """Graph surgery before fine-tuning: fewer channels, smaller kernels, a cropped input border."""

    ratio: float = 0.0  # share of channels removed (0: only the per-layer ratios in `layers`)
    criterion: str = "l1"  # l1 | l2 | bn_scale | taylor | apoz
    scope: str = "layer"  # layer: every layer loses `ratio`; global: ranked over all layers
    round_to: int = 1  # keep channel counts a multiple of this
    skip: list[str] = field(default_factory=list)  # layers whose output channels stay
    layers: dict[str, float] = field(default_factory=dict)  # layer -> its own channel ratio
    kernels: dict[str, tuple[int, int]] = field(default_factory=dict)  # conv layer -> centred smaller kernel
    input_border: tuple[int, int, int, int] = (0, 0, 0, 0)  # pixels cut: top, bottom, left, right
    calibration_samples: int = 512  # training samples for taylor/apoz scores and the border saliency


@dataclass
class LowRankStep:
    rank: int | None = None
    energy: float | None = None
    params_fraction: float | None = None
    choose: str = "auto"  # auto: only where the factors are smaller than the layer now | always
    skip: list[str] = field(default_factory=list)
    merge: dict[str, float] = field(default_factory=dict)  # Dense layer -> fraction of neurons merged away
    #: recovery fine-tune after factorising a pruned model (pruned layers keep their zeros); without [prune]
    #: the factorisation runs first and a [finetune] step, when given, is the recovery instead
    epochs: int = 2
    learning_rate: float | None = None


@dataclass
class MetricsStep:
    noise_sigmas: list[float] = field(default_factory=lambda: [0.1, 0.2])
    shifts: list[int] = field(default_factory=lambda: [1])
    image_shape: tuple[int, int] | None = None  # for shifts of flattened inputs, e.g. "28x28"
    samples: int = 2000  # test samples used for robustness and output fidelity
    latency_runs: int = 100  # host latency of every shipped artifact (0 = not measured)
    grid_g_per_kwh: float | None = None  # grid carbon intensity for g CO2e per million inferences


@dataclass
class Distill:
    temperature: float = 4.0
    alpha: float = 0.5  # weight of the hard-label loss; 1 - alpha goes to the teacher


@dataclass
class Augment:
    """Shifted copies of the training images; with distillation the teacher labels each copy."""

    shift: int = 2  # largest translation in pixels, each direction
    copies: int = 2  # shifted copies added per training image


@dataclass
class FinetuneStep:
    epochs: int = 4  # passes over the training split, shifted copies included
    learning_rate: float = 1e-3
    batch_size: int = 64
    validation_split: float = 0.1
    distill: Distill | None = None
    augment: Augment | None = None


@dataclass
class ClusterStep:
    clusters: int = 16
    preserve_sparsity: bool = True
    epochs: int = 1
    learning_rate: float = 1e-4


@dataclass
class QuantizeStep:
    mode: list[str] = field(default_factory=lambda: ["int8"])
    io: str = "int8"  # int8 | uint8 | float32 — input/output type of full-int8 artifacts
    calibration_samples: int = 500
    qat_epochs: int = 1
    qat_learning_rate: float = 1e-4


@dataclass
class ConvertStep:
    sparse: str = "auto"  # auto | on | off
    targets: list[str] = field(default_factory=lambda: ["litert"])


@dataclass
class Recipe:
    name: str = "recipe"
    description: str = ""
    seed: int = 0
    layer_prune: LayerPruneStep | None = None
    structured: StructuredStep | None = None
    regularize: RegularizeStep | None = None
    prune: PruneStep | None = None
    finetune: FinetuneStep | None = None
    lowrank: LowRankStep | None = None
    metrics: MetricsStep | None = None
    cluster: ClusterStep | None = None
    quantize: QuantizeStep | None = None
    convert: ConvertStep = field(default_factory=ConvertStep)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return d


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A built-in recipe name (`default`, `best`, ...) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = RECIPE_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise RecipeError(f"no recipe {str(name_or_path)!r}",
                              f"built-in recipes: {', '.join(builtin_recipes())}; or give a .toml path")
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    return parse_recipe(path.read_text(), str(path))


def parse_recipe(text: str, where: str = "recipe") -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{where}: not valid TOML: {e}") from None
    v = _Validator(text, where)
    top = v.table(data, (), {"name", "description", "seed", "layer_prune", "structured", "regularize", "prune", "finetune", "lowrank",
                             "cluster", "quantize", "convert", "metrics"})
    r = Recipe(source=text)
    r.name = v.get(top, (), "name", str, Path(where).stem)
    r.description = v.get(top, (), "description", str, "")
    r.seed = v.get(top, (), "seed", int, 0, check=lambda x: x >= 0, allowed=">= 0")
    if "prune" in top:
        r.prune = _prune(v, top["prune"])
    if "finetune" in top:
        r.finetune = _finetune(v, top["finetune"])
    elif r.prune is not None or "structured" in top:
        r.finetune = FinetuneStep()  # masks are applied during training steps; surgery needs recovery
    if "layer_prune" in top:
        r.layer_prune = _layer_prune(v, top["layer_prune"])
    if "structured" in top:
        r.structured = _structured(v, top["structured"])
    if "regularize" in top:
        r.regularize = _regularize(v, top["regularize"])
    if "lowrank" in top:
        r.lowrank = _lowrank(v, top["lowrank"])
    if "metrics" in top:
        r.metrics = _metrics(v, top["metrics"])
    if "cluster" in top:
        r.cluster = _cluster(v, top["cluster"])
    if "quantize" in top:
        r.quantize = _quantize(v, top["quantize"], pruned=r.prune is not None)
    if "convert" in top:
        r.convert = _convert(v, top["convert"])
    return r


def _fraction(x: float) -> bool:
    return 0.0 <= x < 1.0


def _prune(v: "_Validator", t: Any) -> PruneStep:
    p = ("prune",)
    keys = {"final_sparsity", "skip", "layers", "method"}.union(*_METHOD_KEYS.values())
    t = v.table(t, p, keys)
    s = PruneStep()
    s.method = v.choice(t, p, "method", PRUNE_METHODS, s.method)
    s.schedule = v.choice(t, p, "schedule", ("constant", "polynomial"), s.schedule)
    s.final_sparsity = v.get(t, p, "final_sparsity", float, s.final_sparsity, _fraction, "0 <= x < 1")
    default_initial = s.final_sparsity if s.schedule == "constant" else 0.0
    s.initial_sparsity = v.get(t, p, "initial_sparsity", float, default_initial, _fraction, "0 <= x < 1")
    if s.schedule == "constant" and "initial_sparsity" in t:
        v.fail(p, "initial_sparsity", "a constant schedule has one sparsity: set final_sparsity only")
    if s.initial_sparsity > s.final_sparsity:
        v.fail(p, "initial_sparsity", f"is {s.initial_sparsity}, above final_sparsity {s.final_sparsity}")
    s.begin_step = v.get(t, p, "begin_step", int, None, lambda x: x >= 0, ">= 0")
    s.end_step = v.get(t, p, "end_step", int, None, lambda x: x >= 1, ">= 1")
    s.begin_epoch = v.get(t, p, "begin_epoch", float, None, lambda x: x >= 0, ">= 0")
    s.end_epoch = v.get(t, p, "end_epoch", float, None, lambda x: x > 0, "> 0")
    for unit in ("begin", "end"):
        if f"{unit}_step" in t and f"{unit}_epoch" in t:
            v.fail(p, f"{unit}_epoch", f"give {unit}_step or {unit}_epoch, not both")
    if s.begin_step is not None and s.end_step is not None and s.end_step <= s.begin_step:
        v.fail(p, "end_step", f"is {s.end_step}, not after begin_step {s.begin_step}")
    if s.begin_epoch is not None and s.end_epoch is not None and s.end_epoch <= s.begin_epoch:
        v.fail(p, "end_epoch", f"is {s.end_epoch}, not after begin_epoch {s.begin_epoch}")
    s.frequency = v.get(t, p, "frequency", int, None, lambda x: x >= 1, ">= 1 (steps between mask updates)")
    s.granularity = v.choice(t, p, "granularity",
                             GRANULARITIES if s.method == "magnitude" else MASK_GRANULARITIES, s.granularity)
    s.block = v.block(t, p, "block", s.block)
    s.scope = v.choice(t, p, "scope", SCOPES, s.scope)
    if s.scope == "global" and s.granularity == "filter":
        v.fail(p, "scope", "\"global\" cannot rank filters of different layers together",
               "use scope = \"layer\" with granularity = \"filter\"")
    s.importance = v.choice(t, p, "importance", IMPORTANCE, s.importance)
    s.cycles = v.get(t, p, "cycles", int, s.cycles, lambda x: 1 <= x <= 100, "1 to 100")
    s.threshold = v.get(t, p, "threshold", float, None, lambda x: x >= 0, ">= 0")
    s.threshold_kind = v.choice(t, p, "threshold_kind", THRESHOLD_KINDS, s.threshold_kind)
    if s.threshold is not None and "final_sparsity" in t:
        v.fail(p, "threshold", "and final_sparsity both set", "prune to a threshold or to a sparsity, not both")
    s.gate = v.choice(t, p, "gate", GATES, s.gate)
    s.mask_epochs = v.get(t, p, "mask_epochs", int, s.mask_epochs, lambda x: 1 <= x <= 1000, "1 to 1000")
    s.mask_learning_rate = v.get(t, p, "mask_learning_rate", float, None, lambda x: 0 < x < 10, "0 < x < 10")
    _unused_by_method(v, t, p, s)
    s.skip = v.patterns(t, p, "skip")
    layers = v.table(t.get("layers", {}), (*p, "layers"), None)
    for name, lt in layers.items():
        lp = (*p, "layers", name)
        v.regex((*p, "layers"), name, name)
        lt = v.table(lt, lp, {"skip", "initial_sparsity", "final_sparsity", "granularity", "block"})
        own = {"skip", "final_sparsity"} | ({"initial_sparsity"} & _METHOD_KEYS[s.method]) | (
            {"granularity", "block"} if s.method == "magnitude" else set())
        for key in ("initial_sparsity", "granularity", "block"):
            if lt.get(key) is not None and key not in own:
                v.fail(lp, key, f"is not used by method {s.method!r}",
                       f"per-layer overrides of this method: {', '.join(sorted(own))}")
        s.layers[name] = LayerOverride(
            skip=v.get(lt, lp, "skip", bool, False),
            initial_sparsity=v.get(lt, lp, "initial_sparsity", float, None, _fraction, "0 <= x < 1"),
            final_sparsity=v.get(lt, lp, "final_sparsity", float, None, _fraction, "0 <= x < 1"),
            granularity=v.choice(lt, lp, "granularity", GRANULARITIES, None),
            block=v.block(lt, lp, "block", None),
        )
    return s


def _regularize(v: "_Validator", t: Any) -> RegularizeStep:
    p = ("regularize",)
    t = v.table(t, p, {"kind", "l1", "l2", "group", "epochs", "learning_rate", "threshold", "skip"})
    r = RegularizeStep()
    r.kind = v.choice(t, p, "kind", REGULARIZERS, r.kind)
    needs = {"l1": ("l1",), "l2": ("l2",), "elasticnet": ("l1", "l2"), "group_lasso": ("group",)}[r.kind]
    for key in ("l1", "l2", "group"):
        if key in t and key not in needs:
            v.fail(p, key, f"is not used by kind {r.kind!r}", f"kind {r.kind!r} reads {', '.join(needs)}")
    for key in needs:
        if key not in t:
            v.fail(p, "kind", f"is {r.kind!r} but `regularize.{key}` is missing", f"add {key} = 1e-5 (for example)")
        setattr(r, key, v.get(t, p, key, float, 0.0, lambda x: 0 < x < 1, "0 < x < 1"))
    r.epochs = v.get(t, p, "epochs", int, r.epochs, lambda x: 1 <= x <= 10000, "1 to 10000")
    r.learning_rate = v.get(t, p, "learning_rate", float, None, lambda x: 0 < x < 1, "0 < x < 1")
    r.threshold = v.get(t, p, "threshold", float, r.threshold, lambda x: x > 0, "> 0")
    r.skip = v.patterns(t, p, "skip")
    return r


def _layer_prune(v: "_Validator", t: Any) -> LayerPruneStep:
    p = ("layer_prune",)
    t = v.table(t, p, {"blocks", "max_cost", "samples", "epochs"})
    s = LayerPruneStep()
    s.blocks = v.get(t, p, "blocks", int, s.blocks, lambda x: 1 <= x <= 1000, "1 to 1000")
    s.max_cost = v.get(t, p, "max_cost", float, None, lambda x: x >= 0, ">= 0")
    s.samples = v.get(t, p, "samples", int, s.samples, lambda x: 10 <= x <= 100000, "10 to 100000")
    s.epochs = v.get(t, p, "epochs", int, s.epochs, lambda x: 0 <= x <= 1000, "0 to 1000")
    return s


def _structured(v: "_Validator", t: Any) -> StructuredStep:
    from kit.techniques.structured import CRITERIA, SCOPES as CHANNEL_SCOPES

    p = ("structured",)
    t = v.table(t, p, {"ratio", "criterion", "scope", "round_to", "skip", "layers", "kernels", "input_border",
                       "calibration_samples"})
    s = StructuredStep()
    s.ratio = v.get(t, p, "ratio", float, s.ratio, _fraction, "0 <= x < 1")
    s.criterion = v.choice(t, p, "criterion", tuple(CRITERIA), s.criterion)
    s.scope = v.choice(t, p, "scope", tuple(CHANNEL_SCOPES), s.scope)
    s.round_to = v.get(t, p, "round_to", int, s.round_to, lambda x: 1 <= x <= 1024, "1 to 1024")
    s.skip = v.patterns(t, p, "skip")
    layers = v.table(t.get("layers", {}), (*p, "layers"), None)
    for name in layers:
        s.layers[name] = v.get(layers, (*p, "layers"), name, float, None, lambda x: 0 < x < 1,
                               "0 < x < 1 (share of the layer's channels removed)")
    kernels = v.table(t.get("kernels", {}), (*p, "kernels"), None)
    for name, size in kernels.items():
        sizes = [size] * 2 if isinstance(size, int) and not isinstance(size, bool) else size
        if isinstance(size, str) and re.fullmatch(r"\s*\d+\s*x\s*\d+\s*", size):
            sizes = [int(k) for k in size.split("x")]
        if (not isinstance(sizes, list) or len(sizes) != 2
                or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in sizes)):
            v.fail((*p, "kernels"), name, f"is {size!r}, not a kernel size",
                   "write an odd size like 3, \"3x1\" or [height, width]")
        s.kernels[name] = (sizes[0], sizes[1])
    if "input_border" in t:
        border = t["input_border"]
        values = [border] * 4 if isinstance(border, int) and not isinstance(border, bool) else border
        if (not isinstance(values, list) or len(values) != 4
                or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in values)):
            v.fail(p, "input_border", f"is {border!r}, not a border in pixels",
                   "one integer for every side, or [top, bottom, left, right]")
        s.input_border = tuple(values)
    s.calibration_samples = v.get(t, p, "calibration_samples", int, s.calibration_samples,
                                  lambda x: 1 <= x <= 100000, "1 to 100000")
    if not (s.ratio or s.layers or s.kernels or any(s.input_border)):
        v.fail((), "structured", "removes nothing",
               "set ratio, [structured.layers], [structured.kernels] or input_border")
    return s


def _lowrank(v: "_Validator", t: Any) -> LowRankStep:
    p = ("lowrank",)
    t = v.table(t, p, {"rank", "energy", "params_fraction", "choose", "skip", "merge", "epochs", "learning_rate"})
    s = LowRankStep()
    rules = [k for k in ("rank", "energy", "params_fraction") if k in t]
    if len(rules) > 1:
        v.fail(p, rules[1], f"and `lowrank.{rules[0]}` both set", "choose the rank one way")
    if not rules and "merge" not in t:
        v.fail((), "lowrank", "needs rank, energy or params_fraction (or merge)",
               "e.g. energy = 0.9 keeps 90% of each kernel's squared singular values")
    s.rank = v.get(t, p, "rank", int, None, lambda x: x >= 1, ">= 1")
    s.energy = v.get(t, p, "energy", float, None, lambda x: 0 < x <= 1, "0 < x <= 1")
    s.params_fraction = v.get(t, p, "params_fraction", float, None, lambda x: 0 < x <= 1, "0 < x <= 1")
    s.choose = v.choice(t, p, "choose", ("auto", "always"), s.choose)
    s.skip = v.patterns(t, p, "skip")
    merge = v.table(t.get("merge", {}), (*p, "merge"), None)
    for layer in merge:
        s.merge[layer] = v.get(merge, (*p, "merge"), layer, float, None, lambda x: 0 < x < 1,
                               "0 < x < 1 (fraction of the layer's neurons merged away)")
    s.epochs = v.get(t, p, "epochs", int, s.epochs, lambda x: 0 <= x <= 1000, "0 to 1000")
    s.learning_rate = v.get(t, p, "learning_rate", float, None, lambda x: 0 < x < 1, "0 < x < 1")
    return s


def _metrics(v: "_Validator", t: Any) -> MetricsStep:
    p = ("metrics",)
    t = v.table(t, p, {"noise_sigmas", "shifts", "image_shape", "samples", "latency_runs", "grid_g_per_kwh"})
    m = MetricsStep()
    for key, typ in (("noise_sigmas", (int, float)), ("shifts", int)):
        if key in t:
            value = t[key]
            if not isinstance(value, list) or any(isinstance(x, bool) or not isinstance(x, typ) for x in value):
                v.fail(p, key, f"must be a list of {'numbers' if key == 'noise_sigmas' else 'integers'}, got {value!r}")
            if any(x < 0 or (key == "shifts" and x == 0) for x in value):
                v.fail(p, key, f"holds {value!r}", "sigmas >= 0, shifts >= 1 pixel")
            setattr(m, key, [float(x) for x in value] if key == "noise_sigmas" else list(value))
    shape = v.get(t, p, "image_shape", str, None)
    if shape is not None:
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", shape)
        if not match or min(int(match.group(1)), int(match.group(2))) < 1:
            v.fail(p, "image_shape", f"is {shape!r}, not an image size", "write height x width, e.g. \"28x28\"")
        m.image_shape = (int(match.group(1)), int(match.group(2)))
    m.samples = v.get(t, p, "samples", int, m.samples, lambda x: 1 <= x <= 1000000, "1 to 1000000")
    m.latency_runs = v.get(t, p, "latency_runs", int, m.latency_runs, lambda x: 0 <= x <= 100000, "0 to 100000")
    m.grid_g_per_kwh = v.get(t, p, "grid_g_per_kwh", float, None, lambda x: 0 <= x <= 5000, "0 to 5000 g/kWh")
    return m


def _unused_by_method(v: "_Validator", t: dict, p: tuple[str, ...], s: PruneStep) -> None:
    """A knob of another pruning method, set to anything but its default, is a mistake worth naming."""
    default = PruneStep(method=s.method)
    for key in sorted(set(t) - {"final_sparsity", "skip", "layers", "method"} - _METHOD_KEYS[s.method]):
        if getattr(s, key) != getattr(default, key):
            users = [m for m in PRUNE_METHODS if key in _METHOD_KEYS[m]]
            v.fail(p, key, f"is not used by method {s.method!r}", f"it applies to method {' | '.join(users)}")


def _finetune(v: "_Validator", t: Any) -> FinetuneStep:
    p = ("finetune",)
    t = v.table(t, p, {"epochs", "learning_rate", "batch_size", "validation_split", "distill", "augment"})
    f = FinetuneStep()
    f.epochs = v.get(t, p, "epochs", int, f.epochs, lambda x: 1 <= x <= 10000, "1 to 10000")
    f.learning_rate = v.get(t, p, "learning_rate", float, f.learning_rate, lambda x: 0 < x < 1, "0 < x < 1")
    f.batch_size = v.get(t, p, "batch_size", int, f.batch_size, lambda x: 1 <= x <= 65536, "1 to 65536")
    f.validation_split = v.get(t, p, "validation_split", float, f.validation_split, lambda x: 0 <= x < 0.9,
                               "0 <= x < 0.9")
    if "distill" in t:
        dp = (*p, "distill")
        d = v.table(t["distill"], dp, {"temperature", "alpha"})
        f.distill = Distill(
            temperature=v.get(d, dp, "temperature", float, 4.0, lambda x: 0 < x <= 100, "0 < x <= 100"),
            alpha=v.get(d, dp, "alpha", float, 0.5, lambda x: 0 <= x <= 1, "0 <= x <= 1"),
        )
    if "augment" in t:
        ap = (*p, "augment")
        a = v.table(t["augment"], ap, {"shift", "copies"})
        f.augment = Augment(shift=v.get(a, ap, "shift", int, 2, lambda x: 1 <= x <= 64, "1 to 64 pixels"),
                            copies=v.get(a, ap, "copies", int, 2, lambda x: 1 <= x <= 32, "1 to 32"))
    return f


def _cluster(v: "_Validator", t: Any) -> ClusterStep:
    p = ("cluster",)
    t = v.table(t, p, {"clusters", "preserve_sparsity", "epochs", "learning_rate"})
    c = ClusterStep()
    c.clusters = v.get(t, p, "clusters", int, c.clusters, lambda x: 2 <= x <= 256, "2 to 256")
    c.preserve_sparsity = v.get(t, p, "preserve_sparsity", bool, c.preserve_sparsity)
    c.epochs = v.get(t, p, "epochs", int, c.epochs, lambda x: 0 <= x <= 1000, "0 to 1000")
    c.learning_rate = v.get(t, p, "learning_rate", float, c.learning_rate, lambda x: 0 < x < 1, "0 < x < 1")
    return c


def _quantize(v: "_Validator", t: Any, pruned: bool) -> QuantizeStep:
    p = ("quantize",)
    t = v.table(t, p, {"mode", "io", "calibration_samples", "qat_epochs", "qat_learning_rate"})
    q = QuantizeStep()
    mode = t.get("mode", q.mode)
    modes = [mode] if isinstance(mode, str) else v.string_list(t, p, "mode", q.mode)
    for m in modes:
        if m not in QUANT_MODES:
            v.fail(p, "mode", f"{m!r} is not a quantization mode", f"use {' | '.join(QUANT_MODES)}")
    if len(set(modes)) != len(modes):
        v.fail(p, "mode", "lists a mode twice")
    q.mode = modes
    q.io = v.choice(t, p, "io", ("int8", "uint8", "float32"), q.io)
    q.calibration_samples = v.get(t, p, "calibration_samples", int, q.calibration_samples,
                                  lambda x: 1 <= x <= 100000, "1 to 100000")
    q.qat_epochs = v.get(t, p, "qat_epochs", int, q.qat_epochs, lambda x: 1 <= x <= 1000, "1 to 1000")
    q.qat_learning_rate = v.get(t, p, "qat_learning_rate", float, q.qat_learning_rate, lambda x: 0 < x < 1,
                                "0 < x < 1")
    return q


def _convert(v: "_Validator", t: Any) -> ConvertStep:
    p = ("convert",)
    t = v.table(t, p, {"sparse", "targets"})
    c = ConvertStep()
    c.sparse = v.choice(t, p, "sparse", ("auto", "on", "off"), c.sparse)
    c.targets = v.string_list(t, p, "targets", c.targets)
    for r in c.targets:
        if r not in RUNTIMES:
            v.fail(p, "targets", f"{r!r} is not a runtime", f"use any of {', '.join(RUNTIMES)}")
    if not c.targets:
        v.fail(p, "targets", "is empty: an artifact must load on at least one runtime")
    return c


class _Validator:
    """Type/range checks that name the file, line and dotted key of a mistake."""

    def __init__(self, text: str, where: str):
        self.lines = text.splitlines()
        self.where = where

    def _line(self, table: tuple[str, ...], key: str) -> int | None:
        current: tuple[str, ...] = ()
        header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
        for i, line in enumerate(self.lines, 1):
            m = header.match(line)
            if m:
                current = tuple(part.strip().strip('"\'') for part in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)",
                                                                               m.group(1)))
                if current == (*table, key):
                    return i
                continue
            if current == table and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
                return i
        return None

    def fail(self, table: tuple[str, ...], key: str, problem: str, hint: str | None = None):
        dotted = ".".join([*table, key])
        line = self._line(table, key)
        at = f"{self.where}, line {line}" if line else self.where
        raise RecipeError(f"{at}: `{dotted}` {problem}", hint)

    def table(self, t: Any, path: tuple[str, ...], allowed: set[str] | None) -> dict:
        if not isinstance(t, dict):
            self.fail(path[:-1], path[-1], f"must be a table, got {type(t).__name__}", f"write it as [{'.'.join(path)}]")
        if allowed is not None:
            for k in t:
                if k not in allowed:
                    close = difflib.get_close_matches(k, sorted(allowed), n=1)
                    hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(sorted(allowed))}"
                    self.fail(path, k, "is not a known key", hint)
        return t

    def get(self, t: dict, path: tuple[str, ...], key: str, typ: type, default: Any,
            check: Callable[[Any], bool] | None = None, allowed: str | None = None) -> Any:
        if key not in t:
            return default
        value = t[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            self.fail(path, key, f"must be {typ.__name__}, got {type(value).__name__} {value!r}")
        if check is not None and not check(value):
            self.fail(path, key, f"is {value!r}, out of range", f"allowed: {allowed}")
        return value

    def choice(self, t: dict, path: tuple[str, ...], key: str, options: tuple[str, ...], default: Any) -> Any:
        value = self.get(t, path, key, str, default)
        if key in t and value not in options:
            close = difflib.get_close_matches(value, options, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(path, key, f"is {value!r}, not one of {', '.join(options)}", hint + f"use {' | '.join(options)}")
        return value

    def string_list(self, t: dict, path: tuple[str, ...], key: str, default: list[str]) -> list[str]:
        if key not in t:
            return list(default)
        value = t[key]
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            self.fail(path, key, f"must be a list of strings, got {value!r}")
        return list(value)

    def block(self, t: dict, path: tuple[str, ...], key: str, default: Any) -> Any:
        value = self.get(t, path, key, str, None)
        if value is None:
            return default
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", value)
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            self.fail(path, key, f"is {value!r}, not a block shape", "write rows x cols, e.g. \"1x4\" or \"1x16\"")
        return int(m.group(1)), int(m.group(2))

    def patterns(self, t: dict, path: tuple[str, ...], key: str) -> list[str]:
        """A list of layer-name regular expressions, each checked to compile."""
        values = self.string_list(t, path, key, [])
        for pattern in values:
            self.regex(path, key, pattern)
        return values

    def regex(self, path: tuple[str, ...], key: str, pattern: str) -> None:
        try:
            re.compile(pattern)
        except re.error as e:
            self.fail(path, key, f"holds {pattern!r}, not a valid regular expression ({e})")
