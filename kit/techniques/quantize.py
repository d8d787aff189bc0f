"""Quantization-aware training that keeps what pruning and clustering made.

Post-training quantization needs no training and lives in `kit.convert.converter`.
"""
from __future__ import annotations

from kit.core.errors import ModelError


def qat_model(model, pruned: bool, clustered: bool):
    """Wrap `model` for QAT with the scheme that preserves its sparsity/clusters (PQAT, CQAT, PCQAT)."""
    import tensorflow_model_optimization as tfmot

    q = tfmot.quantization.keras
    experimental = tfmot.experimental.combine
    if clustered:
        scheme = experimental.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=pruned)
    elif pruned:
        scheme = experimental.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = None  # TF-MOT default 8-bit scheme
    try:
        annotated = q.quantize_annotate_model(model)
        return q.quantize_apply(annotated, scheme) if scheme is not None else q.quantize_apply(annotated)
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"quantization-aware training cannot wrap this model: {str(e).splitlines()[0][:300]}",
                         "use post-training int8 (quantize.mode = \"int8\") instead of \"qat\"") from None
