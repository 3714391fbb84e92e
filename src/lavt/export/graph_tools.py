"""Graph rewrites done by maintained tools: simplification and float16 conversion.

Neither is trusted blindly: :func:`lavt.export.onnx_export.export_onnx` runs
the result through onnxruntime and keeps it only if it still agrees with
PyTorch.
"""

from __future__ import annotations

import logging
import warnings

from lavt.errors import InputError

log = logging.getLogger("lavt")

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto element types


def simplify_graph(graph):
    """``onnxslim`` (constant folding, shape-arithmetic and dead-node removal), or None.

    None when onnxslim is not installed or fails on this graph; the caller then
    keeps the traced graph.
    """
    try:
        import onnxslim
    except ImportError:
        log.info("onnxslim is not installed: the traced graph is kept as it is")
        return None
    try:
        return onnxslim.slim(graph)
    except Exception as err:  # a third-party tool: any failure just means "not simplified"
        log.warning("onnxslim failed (%s): the traced graph is kept", err)
        return None


def to_float16(graph):
    """Weights and activations in float16; inputs and outputs stay float32.

    ``onnxconverter-common`` leaves ``Cast(to=float)`` nodes (the exporter's
    attention scale ``1/sqrt(head_dim)``, the language mask) disagreeing with
    the float16 types it gives their consumers, so those casts and their direct
    consumers stay float32 (the converter inserts casts around them), and stale
    ``value_info`` is dropped first.
    """
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise InputError(
            "dtype fp16: needs the onnxconverter-common package (pip install 'lavt[onnx]')",
            param="dtype",
        ) from None
    import onnx

    graph = onnx.ModelProto.FromString(graph.SerializeToString())  # leave the caller's alone
    del graph.graph.value_info[:]
    blocked = []
    for node in graph.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == FLOAT for a in node.attribute):
            blocked.append(node.name)
            blocked += [c.name for c in graph.graph.node if node.output[0] in c.input]
    with warnings.catch_warnings():  # "x will be truncated to 1e-07": expected in float16
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            graph, keep_io_types=True, node_block_list=sorted(set(blocked))
        )
    return _float32_outputs(converted)


def _float32_outputs(graph):
    """Append a Cast to float32 to any graph output the conversion left in float16."""
    import onnx

    for output in graph.graph.output:
        tensor_type = output.type.tensor_type
        if tensor_type.elem_type != FLOAT16:
            continue
        inner = output.name + "_float16"
        for node in graph.graph.node:
            node.output[:] = [inner if o == output.name else o for o in node.output]
            node.input[:] = [inner if i == output.name else i for i in node.input]
        graph.graph.node.append(
            onnx.helper.make_node("Cast", [inner], [output.name], to=FLOAT, name=inner + "_cast")
        )
        tensor_type.elem_type = FLOAT
    return graph
