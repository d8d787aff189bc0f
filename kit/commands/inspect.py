"""Show a .tflite model: ops, tensors, per-tensor sparsity and storage, quantization, size breakdown."""
from __future__ import annotations

import argparse

from kit.core.jsonio import dumps


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=".tflite file")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from kit.api import inspect
    from kit.core.tables import format_table

    info = inspect(args.model)
    if args.json:
        d = asdict(info)
        d.update(weight_bytes=info.weight_bytes, graph_bytes=info.graph_bytes)
        print(dumps(d))
        return 0
    print(f"{args.model}: {info.size_bytes:,} bytes (gzip {info.gzip_bytes:,}), schema v{info.schema_version}, "
          f"{info.subgraphs} subgraph(s), {len(info.ops)} ops")
    print(f"  weights {info.weight_bytes:,} bytes, graph and metadata {info.graph_bytes:,} bytes")
    print("\nops:")
    counts: dict[tuple[str, int], int] = {}
    for o in info.ops:
        counts[(o.op, o.version)] = counts.get((o.op, o.version), 0) + 1
    print(format_table(["op", "version", "count"], [[k[0], k[1], v] for k, v in sorted(counts.items())]))
    print("\ninputs / outputs:")
    print(format_table(["", "name", "shape", "dtype", "scale", "zero point"],
                       [[kind, t.name, t.shape, t.dtype, t.quantization.scale if t.quantization else None,
                         t.quantization.zero_point if t.quantization else None]
                        for kind, ids in (("in", info.inputs), ("out", info.outputs)) for t in map(info.tensor, ids)]))
    print("\nconstant tensors:")
    rows = []
    for t in info.tensors:
        if not t.constant:
            continue
        q = t.quantization
        quant = "-" if q is None else (f"per-tensor {q.scale:.3g}" if q.scale is not None else
                                       f"per-axis ({q.scales} scales, dim {q.quantized_dimension})")
        rows.append([t.name[:48], "x".join(map(str, t.shape)), t.dtype, t.storage, t.buffer_bytes,
                     t.sparse_index_bytes, None if t.zero_fraction is None else f"{t.zero_fraction:.1%}", quant])
    print(format_table(["tensor", "shape", "dtype", "storage", "bytes", "index bytes", "zeros", "quantization"], rows))
    return 0
