"""Write each layer's head count into the exported graph, so ONNX Runtime can fuse pruned attention.

transformers v5 splits heads with ``x.view(B, T, -1, d_h)``: the exported Reshape target is
``Concat(B, T, -1, d_h)``. ONNX Runtime's attention fusion reads the head count from that constant
and gives up on -1 unless one ``num_heads`` is passed for the whole model, which is wrong after
head pruning left layers with different head counts (unfused attention measured 5-28% slower,
shared/docs/RUNTIMES.md). This pass replaces the -1 by the head count implied by the projection
feeding the Reshape (its bias has H*d_h entries), which changes no result: the -1 resolved to
exactly that value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _constant_value(node) -> np.ndarray | None:
    from onnx import numpy_helper

    if node is None or node.op_type != "Constant":
        return None
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
    return None


def _projection_width(add_node, initializers: dict) -> int | None:
    """Output width of a linear exported as MatMul + Add(bias): the length of the 1-D bias."""
    if add_node is None or add_node.op_type != "Add":
        return None
    for name in add_node.input:
        init = initializers.get(name)
        if init is not None and len(init.dims) == 1:
            return int(init.dims[0])
    return None


def pin_head_counts(src: Path, dst: Path) -> int:
    """Copy ``src`` to ``dst`` with head-split Reshapes given explicit head counts; return how many."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    initializers = {init.name: init for init in graph.initializer}
    pinned = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        concat = producer.get(node.input[1])
        if concat is None or concat.op_type != "Concat" or len(concat.input) != 4:
            continue
        heads_node, size_node = producer.get(concat.input[2]), producer.get(concat.input[3])
        heads, size = _constant_value(heads_node), _constant_value(size_node)
        width = _projection_width(producer.get(node.input[0]), initializers)
        if heads is None or size is None or width is None or heads.tolist() != [-1] or width % int(size[0]):
            continue
        if uses[concat.input[2]] != 1:  # a shared constant: changing it would change other nodes
            continue
        for attr in heads_node.attribute:
            if attr.name == "value":
                attr.t.CopyFrom(numpy_helper.from_array(np.array([width // int(size[0])], dtype=heads.dtype)))
        pinned += 1
    onnx.save(model, str(dst))
    return pinned
