"""|gamma| of the batch normalization after a channel (network slimming): the learned scale that switches it on."""
from __future__ import annotations

import numpy as np

from kit.techniques.criteria.base import ChannelCriterion, Contribution


class BatchNormScale(ChannelCriterion):
    """|gamma| of every scaled BatchNormalization, mapped to the channels it normalizes."""

    blind_reason = "no BatchNormalization after them"

    def __call__(self, graph, x=None, y=None) -> list[Contribution]:
        out = []
        for name, role in graph.roles.items():
            if role.kind != "channelwise":
                continue
            layer = graph.model.get_layer(name)
            if type(layer).__name__ == "BatchNormalization" and layer.scale:
                atoms = graph.input_map(name)
                if atoms is not None:
                    out.append((np.abs(layer.gamma.numpy()), atoms))
        return out
