"""Channel dependency graph: which output channels must be removed together.

Every channel of every tensor is an *atom*. Conv/Dense/SeparableConv layers
create fresh atoms (their filters or units); batch norm, activations, pooling,
padding and depthwise convolutions pass their input's atoms on; `Add` and the
other elementwise merges tie the atoms of their inputs together channel by
channel; `Concatenate` lays its inputs' atoms side by side; `Flatten` repeats
them once per spatial position (so the next Dense keeps the right rows).
Union-find over atoms yields the removable *units*; layers whose units are tied
form a *group* (a residual stage, say), pruned with one shared ranking.

Atoms that reach the model's inputs or outputs, a skipped layer, or a layer the
graph does not understand (a *barrier*) are frozen: those channels stay.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from kit.core.errors import ModelError

TensorKey = tuple[str, int, int]  # (layer name, node index, tensor index)


@dataclass
class Group:
    """Coupled output channels of one or more layers, kept or removed together."""

    layers: tuple[str, ...]
    units: np.ndarray  # root atom of every removable unit
    frozen: int  # units that must stay

    @property
    def size(self) -> int:
        return len(self.units) + self.frozen


@dataclass
class LayerRole:
    kind: str  # input | source | depthwise | separable | channelwise | passthrough | merge | concat | flatten
    #            | reshape | barrier
    inputs: list[TensorKey] = field(default_factory=list)
    outputs: list[TensorKey] = field(default_factory=list)


@dataclass
class ChannelGraph:
    model: object
    roles: dict[str, LayerRole]
    maps: dict[TensorKey, np.ndarray | None]  # atom of every channel (last axis) of every tensor
    sources: dict[str, np.ndarray]  # atoms of each source layer's output channels
    root: np.ndarray  # union-find root of every atom
    frozen_roots: np.ndarray  # bool per atom id: the unit rooted here must stay
    groups: list[Group]
    notes: list[str]

    def input_map(self, layer: str, index: int = 0) -> np.ndarray | None:
        return self.maps[self.roles[layer].inputs[index]]

    def output_map(self, layer: str, index: int = 0) -> np.ndarray | None:
        return self.maps[self.roles[layer].outputs[index]]

    def kept(self, atoms: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
        """Indices of the channels that survive, given `keep` (bool per root atom)."""
        if atoms is None:
            return None
        return np.nonzero(keep[self.root[atoms]])[0]

    def group_of(self, layer: str) -> Group:
        for g in self.groups:
            if layer in g.layers:
                return g
        raise KeyError(layer)


def build_graph(model, skip: Iterable[str] = ()) -> ChannelGraph:
    """Trace a Sequential or Functional tf_keras model into a channel dependency graph."""
    _check_model(model)
    return _Builder(model, set(skip)).build()


def _check_model(model) -> None:
    import tf_keras as keras

    if not isinstance(model, keras.Model):
        raise ModelError(f"expected a tf_keras model, got {type(model).__name__}",
                         "load the model with tf_keras.models.load_model")
    if not getattr(model, "_is_graph_network", False):
        if isinstance(model, keras.Sequential):
            raise ModelError("the Sequential model is not built, so its graph is unknown",
                             "give it an input shape (keras.Input or model.build(input_shape)) first")
        raise ModelError(
            f"{type(model).__name__} is a subclassed model: its layer graph is Python code the kit cannot trace",
            "re-express it with the Functional API (keras.Input -> layers -> keras.Model) and load its weights "
            "with model.load_weights, then prune that")
    for layer in model.layers:
        if type(layer).__module__.startswith("tensorflow_model_optimization"):
            raise ModelError(f"layer {layer.name!r} is a TF-MOT wrapper ({type(layer).__name__})",
                             "strip the wrappers first (tfmot.sparsity.keras.strip_pruning) and prune structurally "
                             "before unstructured pruning or quantization-aware training")


def _layer_kinds() -> dict[type, str]:
    import tf_keras as keras

    L = keras.layers
    kinds: dict[type, str] = {L.InputLayer: "input", L.Flatten: "flatten", L.Reshape: "reshape",
                              L.Concatenate: "concat", L.BatchNormalization: "channelwise", L.PReLU: "channelwise"}
    for c in (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D):
        kinds[c] = "source"
    for c in (L.SeparableConv1D, L.SeparableConv2D):
        kinds[c] = "separable"
    for c in (L.DepthwiseConv1D, L.DepthwiseConv2D):
        kinds[c] = "depthwise"
    for c in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
        kinds[c] = "merge"
    passthrough = (
        "Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Softmax", "Dropout", "SpatialDropout1D",
        "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
        "ActivityRegularization", "Identity", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
        "AveragePooling2D", "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "ZeroPadding1D",
        "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D",
        "UpSampling3D")
    for name in passthrough:
        if hasattr(L, name):
            kinds[getattr(L, name)] = "passthrough"
    return kinds


def _shape(s) -> tuple:
    return tuple(None if d is None else int(d) for d in s)


class _Builder:
    def __init__(self, model, skip: set[str]):
        self.model = model
        self.skip = skip
        self.kinds = _layer_kinds()
        self.parent: list[int] = []
        self.frozen: list[bool] = []
        self.maps: dict[TensorKey, np.ndarray | None] = {}
        self.roles: dict[str, LayerRole] = {}
        self.sources: dict[str, np.ndarray] = {}
        self.notes: list[str] = []

    # union-find over atoms
    def _atoms(self, n: int | None, frozen: bool) -> np.ndarray | None:
        if n is None:
            return None
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        self.frozen.extend([frozen] * n)
        return np.arange(start, start + n)

    def _find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def _union(self, xs: np.ndarray, ys: np.ndarray) -> None:
        for x, y in zip(xs.tolist(), ys.tolist()):
            rx, ry = self._find(x), self._find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def _freeze(self, atoms: np.ndarray | None) -> None:
        if atoms is not None:
            for a in atoms.tolist():
                self.frozen[a] = True

    def build(self) -> ChannelGraph:
        import tensorflow as tf

        model = self.model
        names = {layer.name for layer in model.layers}
        unknown = sorted(self.skip - names)
        if unknown:
            raise ModelError(f"skip names layer(s) not in the model: {', '.join(unknown)}")
        depth_nodes = model._nodes_by_depth
        calls: dict[str, int] = {}
        for depth in depth_nodes:
            for node in depth_nodes[depth]:
                calls[node.layer.name] = calls.get(node.layer.name, 0) + 1
        for depth in sorted(depth_nodes, reverse=True):
            for node in depth_nodes[depth]:
                layer = node.layer
                inputs = [_key(t) for t in tf.nest.flatten(node.keras_inputs)]
                outputs = [_key(t) for t in tf.nest.flatten(node.outputs)]
                in_shapes = [_shape(t.shape) for t in tf.nest.flatten(node.keras_inputs)]
                out_shapes = [_shape(t.shape) for t in tf.nest.flatten(node.outputs)]
                kind = self._kind(layer, calls[layer.name], in_shapes)
                self._apply(layer, kind, inputs, outputs, in_shapes, out_shapes)
        for t in tf.nest.flatten(model.outputs):
            self._freeze(self.maps[_key(t)])
        for name in sorted(self.skip):
            if name not in self.sources:
                raise ModelError(f"cannot skip {name!r} ({type(model.get_layer(name)).__name__}): only Conv, Dense and "
                                 "SeparableConv layers have output channels of their own",
                                 "name the layer that produces the channels instead")
            self._freeze(self.sources[name])
        return self._finish()

    def _kind(self, layer, calls: int, in_shapes: list[tuple]) -> str:
        kind = self.kinds.get(type(layer), "barrier")
        if kind == "input":
            return kind
        why = None
        if kind == "barrier":
            why = "not a layer type the channel graph understands"
        elif calls > 1:
            why = f"shared layer (called {calls} times)"
        elif getattr(layer, "data_format", "channels_last") != "channels_last":
            why = "channels_first data format"
        elif getattr(layer, "groups", 1) != 1:
            why = "grouped convolution"
        elif type(layer).__name__ == "BatchNormalization":
            rank = len(in_shapes[0])
            if [int(a) % rank for a in layer.axis] != [rank - 1]:
                why = f"normalizes over axis {list(layer.axis)}, not the channel axis"
        if why is None:
            return kind
        self.notes.append(f"{layer.name} ({type(layer).__name__}): {why}; its input and output channels are left "
                          "intact")
        return "barrier"

    def _apply(self, layer, kind: str, inputs, outputs, in_shapes, out_shapes) -> None:
        name = layer.name
        in_maps = [self.maps[k] for k in inputs]
        self.roles[name] = LayerRole(kind, inputs, outputs)
        out: list[np.ndarray | None]
        if kind == "input":
            out = [self._atoms(s[-1], frozen=True) for s in out_shapes]
        elif kind in ("source", "separable"):
            atoms = self._atoms(out_shapes[0][-1], frozen=False)
            self.sources[name] = atoms
            out = [atoms]
        elif kind == "depthwise":
            m = in_maps[0]
            out = [None if m is None else np.repeat(m, int(layer.depth_multiplier))]
        elif kind in ("passthrough", "channelwise"):
            out = [in_maps[0]]
        elif kind == "merge":
            out = self._merge(layer, in_maps, out_shapes)
        elif kind == "concat":
            rank = len(out_shapes[0])
            if int(layer.axis) % rank == rank - 1 and all(m is not None for m in in_maps):
                out = [np.concatenate(in_maps)]
            else:
                out = self._merge(layer, in_maps, out_shapes)
        elif kind == "flatten":
            m, s = in_maps[0], in_shapes[0]
            if m is None or any(d is None for d in s[1:]):
                out = self._barrier(layer, in_maps, out_shapes, "spatial size unknown")
            else:
                out = [np.tile(m, int(np.prod(s[1:-1], dtype=np.int64)))]
        elif kind == "reshape":
            out = self._reshape(layer, in_maps[0], in_shapes[0], out_shapes)
        else:
            out = self._barrier(layer, in_maps, out_shapes, None)
        for k, m in zip(outputs, out):
            self.maps[k] = m

    def _barrier(self, layer, in_maps, out_shapes, why: str | None) -> list:
        if why:
            self.notes.append(f"{layer.name} ({type(layer).__name__}): {why}; its channels are left intact")
            self.roles[layer.name].kind = "barrier"
        for m in in_maps:
            self._freeze(m)
        return [self._atoms(s[-1] if s else None, frozen=True) for s in out_shapes]

    def _merge(self, layer, in_maps, out_shapes) -> list:
        if any(m is None for m in in_maps):
            return self._barrier(layer, in_maps, out_shapes, "an input has an unknown channel count")
        n = max(len(m) for m in in_maps)
        full = [m for m in in_maps if len(m) == n]
        if any(len(m) not in (1, n) for m in in_maps) or out_shapes[0][-1] != n:
            return self._barrier(layer, in_maps, out_shapes, "inputs with different channel counts")
        for m in full[1:]:
            self._union(full[0], m)
        return [full[0]]

    def _reshape(self, layer, m, in_shape, out_shapes) -> list:
        out_shape = out_shapes[0]
        if m is None:
            return [None]
        if out_shape[-1] == in_shape[-1]:
            return [m]
        if len(out_shape) == 2 and all(d is not None for d in in_shape[1:]):
            return [np.tile(m, int(np.prod(in_shape[1:-1], dtype=np.int64)))]
        return self._barrier(layer, [m], out_shapes, "reshape moves the channel axis")

    def _finish(self) -> ChannelGraph:
        n = len(self.parent)
        root = np.array([self._find(i) for i in range(n)], dtype=np.int64)
        frozen_roots = np.zeros(n, dtype=bool)
        frozen_roots[root[np.array(self.frozen, dtype=bool)]] = True
        return ChannelGraph(self.model, self.roles, self.maps, self.sources, root, frozen_roots,
                            self._groups(root, frozen_roots), self.notes)

    def _groups(self, root: np.ndarray, frozen_roots: np.ndarray) -> list[Group]:
        order = [layer.name for layer in self.model.layers if layer.name in self.sources]
        owner: dict[int, str] = {}
        link = {name: name for name in order}

        def find(x: str) -> str:
            while link[x] != x:
                link[x] = link[link[x]]
                x = link[x]
            return x

        for name in order:
            for r in set(root[self.sources[name]].tolist()):
                if r in owner:
                    a, b = find(owner[r]), find(name)
                    if a != b:
                        link[b] = a
                else:
                    owner[r] = name
        members: dict[str, list[str]] = {}
        for name in order:
            members.setdefault(find(name), []).append(name)
        groups = []
        for head, layers in members.items():
            roots = sorted({int(r) for name in layers for r in root[self.sources[name]].tolist()})
            units = np.array([r for r in roots if not frozen_roots[r]], dtype=np.int64)
            groups.append(Group(tuple(layers), units, len(roots) - len(units)))
        return groups


def _key(t) -> TensorKey:
    layer, node_index, tensor_index = t._keras_history
    return (layer.name, int(node_index), int(tensor_index))
