"""One compression run: baseline -> layer pruning -> regularisation -> prune -> fine-tune -> low-rank ->
cluster -> quantize -> convert -> check -> metrics -> write.

Every artifact is loaded on each runtime and its figures recorded; an artifact
that does not load on the runtimes the recipe targets is never shipped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.techniques import prune as pruning
from kit.pipeline.convert import ArtifactSpec
from kit.pipeline.data import Dataset, load_data
from kit.core.errors import DataError, KitError
from kit.techniques.finetune import History, fit, steps_per_epoch
from kit.recipe import Recipe, load_recipe
from kit.pipeline.artifacts import Artifact, artifacts_for, build_artifact
from kit.pipeline.manifest import write_manifest


@dataclass
class RunResult:
    out_dir: Path
    recipe: Recipe
    dataset: str
    baseline: Artifact
    artifacts: list[Artifact]
    keras_accuracy: dict[str, float]
    layer_sparsity: dict[str, dict]
    prune_plan: dict | None
    history: History | None
    seconds: dict[str, float]
    manifest_path: Path | None = None
    #: reports of the technique steps that ran (regularize, soft, learned, iterative, lowrank, merge, layer_prune)
    techniques: dict[str, Any] = field(default_factory=dict)
    #: compression, sparsity, params/MACs, top-k, latency/FPS/energy, robustness, output fidelity (kit.pipeline.metrics)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def shipped(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.shipped]


def compress(model: Any, recipe: Recipe | str = "default", data: Dataset | str = "mnist5k",
             out: str | Path = "runs/compress", model_name: str | None = None, teacher_epochs: int = 20,
             eval_samples: int | None = None, log=print) -> RunResult:
    """Compress `model` (a tf_keras model, a model file, or a built-in name) with `recipe` on `data`."""
    from kit.models import ZOO, build, load_model, train_baseline
    from kit.report.run_report import write_report

    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    dataset = data if isinstance(data, Dataset) else load_data(data, seed=recipe.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _seed(recipe.seed)

    if isinstance(model, str) and model in ZOO:
        model_name = model_name or model
        log(f"training the built-in {model} baseline on {dataset.name} ({teacher_epochs} epochs)")
        flat_input = dataset.x_train.shape[1:] if model == "lenet-300-100" else None
        model = build(model, input_shape=flat_input, num_classes=dataset.num_classes)
        train_baseline(model, dataset.fit_to(model.input_shape[1:]), epochs=teacher_epochs, seed=recipe.seed)
        timings["baseline_training"] = time.perf_counter() - t_start
    elif isinstance(model, (str, Path)):
        model_name = model_name or Path(model).stem
        model = load_model(model)
    model_name = model_name or model.name
    dataset = dataset.fit_to(model.input_shape[1:])
    _check_classes(model, dataset)
    x_eval, y_eval = dataset.x_test[:eval_samples], dataset.y_test[:eval_samples]

    log(f"baseline: {model_name} on {dataset.description}")
    keras_acc = {"original": _keras_accuracy(model, x_eval, y_eval)}
    baseline = build_artifact(model, ArtifactSpec("float32"), dataset, x_eval, y_eval, out, model_name,
                               targets=("litert",), baseline=True)

    techniques: dict[str, Any] = {}
    start = model  # what pruning starts from; `model` stays the teacher and the fidelity reference
    if recipe.layer_prune is not None:
        t = time.perf_counter()
        start = _layer_prune(start, model, recipe, dataset, techniques, log)
        keras_acc["layer_pruned"] = _keras_accuracy(start, x_eval, y_eval)
        timings["layer_prune"] = time.perf_counter() - t
    if recipe.structured is not None:
        from kit.techniques.structured.step import run_step

        t = time.perf_counter()
        n = recipe.structured.calibration_samples
        start, techniques["structured"] = run_step(start, recipe.structured, dataset.x_train[:n],
                                                   dataset.y_train[:n], log=log)
        keras_acc["structured"] = _keras_accuracy(start, x_eval, y_eval)
        timings["structured"] = time.perf_counter() - t
    if recipe.regularize is not None:
        from kit.techniques.regularize import regularize

        t = time.perf_counter()
        rg = recipe.regularize
        log(f"regularize: {rg.kind} for {rg.epochs} epochs")
        start, report = regularize(start, rg.kind, dataset.x_train, dataset.y_train, recipe.finetune or
                                    _default_finetune(), l1=rg.l1, l2=rg.l2, group=rg.group, epochs=rg.epochs,
                                    learning_rate=rg.learning_rate, threshold=rg.threshold,
                                    skip=[*rg.skip, *(recipe.prune.skip if recipe.prune else [])], teacher=model)
        techniques["regularize"] = report.to_dict()
        log(f"  |w| < {rg.threshold:g}: {report.near_zero_before:.1%} -> {report.near_zero_after:.1%} of kernel weights")
        keras_acc["regularized"] = _keras_accuracy(start, x_eval, y_eval)
        timings["regularize"] = time.perf_counter() - t

    # without pruning, the factors come first and the fine-tune step is their recovery
    lowrank_first = recipe.lowrank is not None and recipe.prune is None and recipe.finetune is not None
    if lowrank_first:
        t = time.perf_counter()
        start = _lowrank(start, model, recipe, dataset, techniques, log, recover=False)
        timings["lowrank"] = time.perf_counter() - t

    current, history, plan_dict, scores = start, None, None, None
    pruned = clustered = False
    t = time.perf_counter()
    if recipe.prune is not None:
        ft = recipe.finetune
        spe = steps_per_epoch(len(dataset.x_train), ft)
        plan = pruning.plan(start, recipe.prune, spe, ft.epochs)
        plan_dict = plan.to_dict()
        if recipe.prune.method == "magnitude":
            log(f"prune: {recipe.prune.schedule} to {recipe.prune.final_sparsity:.0%} ({recipe.prune.granularity}), "
                f"steps {plan.begin_step}->{plan.end_step} every {plan.frequency}, {len(plan.layers)} layers")
            wrapped = pruning.apply(start, plan, recipe.prune.schedule)
            history = fit(wrapped, dataset.x_train, dataset.y_train, ft, teacher=model,
                          extra_callbacks=pruning.callbacks(), sparsity_fn=pruning.mask_sparsity)
            current = pruning.strip(wrapped)
        else:
            current, history = _mask_prune(start, model, plan, recipe, dataset, techniques, log)
        pruned = True
        scores = _scores_for_report(start, plan, recipe, dataset)
    elif recipe.finetune is not None:
        aug = recipe.finetune.augment
        log(f"fine-tune: {recipe.finetune.epochs} epochs"
            + (f" over the images and {aug.copies} copies shifted up to {aug.shift} px" if aug else ""))
        current = pruning.private_copy(start)
        history = fit(current, dataset.x_train, dataset.y_train, recipe.finetune, teacher=model)
    timings["prune_finetune"] = time.perf_counter() - t

    if recipe.lowrank is not None and not lowrank_first:
        t = time.perf_counter()
        current = _lowrank(current, model, recipe, dataset, techniques, log, recover=True)
        keras_acc["lowrank"] = _keras_accuracy(current, x_eval, y_eval)
        timings["lowrank"] = time.perf_counter() - t

    if recipe.cluster is not None:
        from kit.techniques import cluster as clustering

        t = time.perf_counter()
        log(f"cluster: {recipe.cluster.clusters} clusters, preserve_sparsity={recipe.cluster.preserve_sparsity}")
        wrapped = clustering.cluster(current, recipe.cluster)
        if recipe.cluster.epochs:
            ft = recipe.finetune or _default_finetune()
            fit(wrapped, dataset.x_train, dataset.y_train, ft, teacher=model if ft.distill else None,
                epochs=recipe.cluster.epochs, lr=recipe.cluster.learning_rate)
        current = clustering.strip(wrapped)
        clustered = True
        timings["cluster"] = time.perf_counter() - t
    keras_acc["compressed"] = _keras_accuracy(current, x_eval, y_eval)

    t = time.perf_counter()
    artifacts = []
    quantize = recipe.quantize
    modes = quantize.mode if quantize is not None else ["none"]
    for mode in modes:
        source, fmt = current, {"none": "float32"}.get(mode, mode)
        if mode == "qat":
            source, fmt = _qat(current, model, dataset, recipe, pruned, clustered, log), "int8"
            keras_acc["qat"] = _keras_accuracy(source, x_eval, y_eval)
        io = quantize.io if quantize is not None else "int8"
        artifacts += artifacts_for(source, fmt, io, pruned, recipe, dataset, x_eval, y_eval, out, model_name, log)
    timings["convert_check"] = time.perf_counter() - t

    t = time.perf_counter()
    metrics = _metrics(model, current, dataset, x_eval, y_eval, baseline, artifacts, recipe, log)
    timings["metrics"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start

    result = RunResult(out, recipe, dataset.description, baseline, artifacts, keras_acc,
                       pruning.kernel_sparsity(current), plan_dict, history, timings, techniques=techniques,
                       metrics=metrics)
    current.save(out / f"{model_name}.compressed.h5")
    result.manifest_path = write_manifest(result, model_name)
    report_path = write_report(result)
    from kit.report.explain import append_sections

    append_sections(report_path, current, metrics, techniques, image_shape=_image_shape(recipe, dataset, model),
                    scores=scores)
    return result


def _scores_for_report(start, plan, recipe: Recipe, dataset: Dataset) -> dict:
    """Importance of the weights pruning started from, by the method that ranked them (magnitude unless
    iterative pruning used another), for the report's histograms."""
    from kit.techniques import importance, masking

    planned = {p.layer for p in plan.layers}
    kernels = {k: v for k, v in masking.prunable_kernels(start).items() if k.split("/")[0] in planned}
    method = recipe.prune.importance if recipe.prune.method == "iterative" else "magnitude"
    return importance.scores(start, kernels, method, dataset.x_train[:512], dataset.y_train[:512])


def _layer_prune(source, teacher, recipe: Recipe, dataset: Dataset, techniques: dict, log):
    """Remove the cheapest blocks, measured on the fine-tune's validation samples (the last of the training
    set, never trained on by the fine-tunes), then recover with a short fine-tune."""
    from kit.techniques.layer_prune import prune_blocks

    lp = recipe.layer_prune
    ft = recipe.finetune or _default_finetune()
    n = min(lp.samples, max(10, int(len(dataset.x_train) * (ft.validation_split or 0.1))))
    x_val, y_val = dataset.x_train[-n:], dataset.y_train[-n:]
    log(f"layer pruning: up to {lp.blocks} block(s), cost measured on {n} held-out training samples")
    pruned, report = prune_blocks(source, x_val, y_val, count=lp.blocks, max_cost=lp.max_cost, log=log)
    techniques["layer_prune"] = report.to_dict()
    if lp.epochs and report.removed:
        fit(pruned, dataset.x_train, dataset.y_train, ft, teacher=teacher, epochs=lp.epochs)
    return pruned


def _mask_prune(source, teacher, plan, recipe: Recipe, dataset: Dataset, techniques: dict, log):
    """The kit's own mask-based methods (soft, learned, iterative) on a plain copy of the model."""
    from kit.techniques import masking

    step, ft = recipe.prune, recipe.finetune
    work = pruning.private_copy(source)
    planned = {p.layer for p in plan.layers}
    kernels = {k: v for k, v in masking.prunable_kernels(work).items() if k.split("/")[0] in planned}
    ramp = masking.kernel_targets(kernels, plan)
    final = {k: v[1] for k, v in ramp.items()}
    pooled = {k for k, v in final.items() if v == step.final_sparsity} if step.scope == "global" else None
    x, y = dataset.x_train, dataset.y_train
    if step.method == "soft":
        from kit.techniques.soft_prune import soft_prune

        log(f"soft pruning ({step.granularity}, {step.scope}) to {step.final_sparsity:.0%}: masks updated every "
            f"{plan.frequency} steps from {plan.begin_step} to {plan.end_step}, then hard")
        masks, report, history = soft_prune(work, kernels, ramp, x, y, ft, plan.begin_step, plan.end_step,
                                            plan.frequency, step.granularity, step.scope, teacher=teacher,
                                            pooled=pooled)
        log(f"  {report.revived:,} masked weights came back at a later update ({report.revived_in_final:,} kept)")
        techniques["soft"] = report.to_dict()
    elif step.method == "learned":
        from kit.techniques.learned_masks import learn_masks

        log(f"learned masks ({step.gate}, {step.granularity}, {step.scope}) to {step.final_sparsity:.0%}: "
            f"{step.mask_epochs} mask epochs, then {ft.epochs} fine-tune epochs with the masks fixed")
        work, masks, report = learn_masks(work, final, x, y, epochs=step.mask_epochs, learning_rate=ft.learning_rate,
                                          mask_learning_rate=step.mask_learning_rate, batch_size=ft.batch_size,
                                          gate=step.gate, granularity=step.granularity, scope=step.scope,
                                          seed=recipe.seed, pooled=pooled, log=log)
        kernels = {k: v for k, v in masking.prunable_kernels(work).items() if k in masks}
        history = masking.fit_masked(work, kernels, masks, x, y, ft, teacher=teacher)
        techniques["learned"] = report.to_dict()
    else:
        from kit.techniques.iterative import iterative_prune

        rule = (f"{step.threshold_kind} threshold {step.threshold:g}" if step.threshold is not None
                else f"{step.final_sparsity:.0%}")
        log(f"iterative pruning: {step.cycles} cycle(s) to {rule}, {step.importance} importance, {step.scope} "
            "ranking")
        masks, report, history = iterative_prune(work, kernels, final, x, y, ft, cycles=step.cycles,
                                                 importance=step.importance, scope=step.scope,
                                                 threshold=step.threshold, threshold_kind=step.threshold_kind,
                                                 teacher=teacher, pooled=pooled, log=log)
        techniques["iterative"] = report.to_dict()
    return work, history


def _lowrank(current, teacher, recipe: Recipe, dataset: Dataset, techniques: dict, log, recover: bool):
    """Factorise where the factors are smaller, merge neurons, then (`recover`) fine-tune with pruned zeros kept."""
    from kit.techniques import masking
    from kit.techniques.lowrank import factorize, merge_neurons

    lr = recipe.lowrank
    if any(v is not None for v in (lr.rank, lr.energy, lr.params_fraction)):
        current, report = factorize(current, rank=lr.rank, energy=lr.energy, params_fraction=lr.params_fraction,
                                    skip=lr.skip, choose=lr.choose)
        techniques["lowrank"] = report.to_dict()
        done = [f"{c.layer} rank {c.rank}" for c in report.layers if c.factorized]
        log(f"low-rank ({report.rule}): {', '.join(done) or 'no layer is smaller factorised'}; "
            f"params {report.params_before:,} -> {report.params_after:,}")
    merges = []
    for layer, fraction in lr.merge.items():
        current, m = merge_neurons(current, layer, fraction)
        merges.append(m.to_dict())
        log(f"weight merging: {layer} {m.units_before} -> {m.units_after} neurons")
    if merges:
        techniques["merge"] = merges
    if recover and lr.epochs:
        ft = recipe.finetune or _default_finetune()
        kernels = masking.prunable_kernels(current)
        masks = {k: m for k, m in masking.current_masks(kernels).items() if not m.all()}
        if masks:
            masking.fit_masked(current, {k: kernels[k] for k in masks}, masks, dataset.x_train, dataset.y_train, ft,
                               teacher=teacher, epochs=lr.epochs, lr=lr.learning_rate)
        else:
            fit(current, dataset.x_train, dataset.y_train, ft, teacher=teacher, epochs=lr.epochs, lr=lr.learning_rate)
    return current


def _image_shape(recipe: Recipe, dataset: Dataset, model) -> tuple[int, ...] | None:
    """Image layout of the inputs, for shifts and the input-importance map (None for non-image data)."""
    if recipe.metrics is not None and recipe.metrics.image_shape is not None:
        return recipe.metrics.image_shape
    shape = tuple(int(d) for d in model.input_shape[1:])
    if len(shape) >= 2:
        return shape
    return {"digits": (8, 8), "mnist5k": (28, 28)}.get(dataset.name)


def _metrics(model, current, dataset: Dataset, x_eval, y_eval, baseline: Artifact, artifacts: list[Artifact],
             recipe: Recipe, log) -> dict[str, Any]:
    from kit.pipeline import metrics as M
    from kit.recipe import MetricsStep

    settings = recipe.metrics or MetricsStep(latency_runs=0)
    n = min(settings.samples, len(x_eval))
    x, y = x_eval[:n], y_eval[:n]
    before, after = M.model_figures(model), M.model_figures(current)
    ref, out = model.predict(x, batch_size=512, verbose=0), current.predict(x, batch_size=512, verbose=0)
    mse, psnr = M.mse_psnr(ref, out)
    classes = ref.reshape(len(ref), -1).shape[1]
    m: dict[str, Any] = {
        "before": before.to_dict(), "after": after.to_dict(), "pruning_rate": M.pruning_rate(before, after),
        "top1": {"original": M.topk(ref, y), "compressed": M.topk(out, y)},
        "top5": {"original": M.topk(ref, y, 5), "compressed": M.topk(out, y, 5)} if classes > 5 else {},
        "output_mse": mse, "output_psnr_db": psnr, "samples": n,
    }
    image_shape = _image_shape(recipe, dataset, model)
    rob = M.robustness({"original": M.keras_predict(model), "compressed": M.keras_predict(current)}, x, y,
                       settings.noise_sigmas, settings.shifts if image_shape else (), image_shape, seed=recipe.seed)
    m["robustness"] = rob.to_dict()
    m["compression"] = {}
    profiles = _profile([baseline, *artifacts], settings.latency_runs, log) if settings.latency_runs else {}
    for a in [baseline, *[a for a in artifacts if a.shipped]]:
        entry = {"bytes": a.bytes, "rate": M.compression_rate(baseline.bytes, a.bytes)}
        p = profiles.get(a.name)
        if p is not None:
            median = p.latency.median_us if p.latency else None
            entry.update(median_us=median, fps=M.fps(median), energy_uj=p.energy_uj_per_inference,
                         co2e_g_per_million=M.co2e_grams_per_million(p.energy_uj_per_inference,
                                                                     settings.grid_g_per_kwh))
            m["energy_note"] = p.energy_note
        m["compression"][a.name] = entry
    return m


def _profile(artifacts: list[Artifact], runs: int, log) -> dict:
    """Host latency of the baseline and every shipped artifact on LiteRT (the runtime that runs it correctly)."""
    from targets.base import RunSettings
    from targets.registry import get_target

    out = {}
    with get_target("local") as host:
        for a in artifacts:
            if not a.shipped or a.path is None:
                continue
            ok = [c.runtime for c in a.checks if c.loads and c.problem is None and c.runtime != "tflm"]
            if not ok:
                continue
            delegate = "default" if ok[0] == "litert" else "none"
            try:
                out[a.name] = host.profile(Path(a.path), RunSettings(runs=runs, warmup=max(1, runs // 10),
                                                                     delegate=delegate))
            except KitError as e:
                log(f"  latency of {a.name} not measured: {e.message}")
    return out


def _default_finetune():
    from kit.recipe import FinetuneStep

    return FinetuneStep()


def _seed(seed: int) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)


def _check_classes(model, dataset: Dataset) -> None:
    units = model.output_shape[-1]
    if units is not None and dataset.num_classes > units:
        raise DataError(f"the data has labels up to {dataset.num_classes - 1} but the model has {units} outputs",
                        "use data whose labels are 0..outputs-1")


def _keras_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x, batch_size=512, verbose=0).argmax(axis=1) == y))


def _qat(current, teacher, dataset: Dataset, recipe: Recipe, pruned: bool, clustered: bool, log):
    from kit.techniques.quantize import qat_model

    q = recipe.quantize
    log(f"quantization-aware training: {q.qat_epochs} epochs"
        + (" (sparsity preserved)" if pruned else "") + (" (clusters preserved)" if clustered else ""))
    qm = qat_model(current, pruned, clustered)
    ft = recipe.finetune or _default_finetune()
    fit(qm, dataset.x_train, dataset.y_train, ft, teacher=teacher if ft.distill else None, epochs=q.qat_epochs,
        lr=q.qat_learning_rate)
    return qm

