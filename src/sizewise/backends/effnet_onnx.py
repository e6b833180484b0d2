"""EfficientNet-Lite0 as an ONNX graph, built from its PyTorch state dict with the ``onnx`` package.

The network (Tan & Le 2019, the "lite" variant: no squeeze-excitation, ReLU6, fixed stem and head):
a 3x3 stem, 16 MBConv blocks (1x1 expand, depthwise kxk, 1x1 project, a residual when shape allows),
a 1x1 head to 1280 channels, global average pooling and a 1000-way linear layer. Batch norms are
folded into the convolutions before export, so the graph is only Conv, Clip, Add, pooling and Gemm.
Convolutions pad like TensorFlow's ``SAME`` (the model was trained in TensorFlow): ``SAME_UPPER``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sizewise.errors import ConfigError

#: Blocks that halve the resolution (the first block of stages 2, 3, 4 and 6).
_STRIDE2 = frozenset({1, 3, 5, 11})
_BN_EPS = 1e-3
INPUT = "image"
OUTPUT = "logits"
SIZE = 224


def _fold(state: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight and bias with the batch norm ``bn`` folded in (inference only)."""
    weight = state[f"{conv}.weight"].astype(np.float32)
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + _BN_EPS)
    bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
    return (weight * scale[:, None, None, None]).astype(np.float32), bias.astype(np.float32)


class _Graph:
    """Collects nodes and initialisers; each ``add`` returns the new tensor's name."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.weights: list[Any] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, array: np.ndarray, prefix: str) -> str:
        from onnx import numpy_helper

        name = self._name(prefix)
        self.weights.append(numpy_helper.from_array(array, name))
        return name

    def add(self, op: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray, *, stride: int = 1, relu6: bool) -> str:
        out_ch, in_per_group, kh, kw = weight.shape
        groups = out_ch if in_per_group == 1 and kh > 1 else 1  # a depthwise convolution
        y = self.add(
            "Conv",
            [x, self.const(weight, "w"), self.const(bias, "b")],
            kernel_shape=[kh, kw],
            strides=[stride, stride],
            group=groups,
            auto_pad="SAME_UPPER",
        )
        return self.add("Clip", [y, self._zero, self._six]) if relu6 else y

    def init_clip(self) -> None:
        self._zero = self.const(np.array(0.0, np.float32), "zero")
        self._six = self.const(np.array(6.0, np.float32), "six")


def _block(graph: _Graph, state: dict[str, np.ndarray], index: int, x: str) -> str:
    p = f"_blocks.{index}"
    stride = 2 if index in _STRIDE2 else 1
    expand = f"{p}._expand_conv.weight" in state
    in_ch = state[f"{p}._expand_conv.weight"].shape[1] if expand else state[f"{p}._depthwise_conv.weight"].shape[0]
    y = graph.conv(x, *_fold(state, f"{p}._expand_conv", f"{p}._bn0"), relu6=True) if expand else x
    y = graph.conv(y, *_fold(state, f"{p}._depthwise_conv", f"{p}._bn1"), stride=stride, relu6=True)
    y = graph.conv(y, *_fold(state, f"{p}._project_conv", f"{p}._bn2"), relu6=False)
    if stride == 1 and in_ch == state[f"{p}._project_conv.weight"].shape[0]:  # the identity skip
        y = graph.add("Add", [y, x])
    return y


def build_model(state: dict[str, np.ndarray]) -> bytes:
    """The serialised ONNX model: input ``image`` (N, 3, 224, 224) float32, output ``logits`` (N, 1000)."""
    from onnx import TensorProto, checker, helper

    blocks = sorted({int(key.split(".")[1]) for key in state if key.startswith("_blocks.")})
    if blocks != list(range(16)) or "_fc.weight" not in state:
        raise ConfigError("the state dict is not EfficientNet-Lite0 (expected 16 blocks and an _fc layer)")
    graph = _Graph()
    graph.init_clip()
    x = graph.conv(INPUT, *_fold(state, "_conv_stem", "_bn0"), stride=2, relu6=True)
    for index in blocks:
        x = _block(graph, state, index, x)
    x = graph.conv(x, *_fold(state, "_conv_head", "_bn1"), relu6=True)
    x = graph.add("GlobalAveragePool", [x])
    x = graph.add("Flatten", [x], axis=1)
    fc_w, fc_b = state["_fc.weight"].astype(np.float32), state["_fc.bias"].astype(np.float32)
    graph.add("Gemm", [x, graph.const(fc_w, "fc_w"), graph.const(fc_b, "fc_b")], transB=1)
    graph.nodes[-1].output[0] = OUTPUT  # the last node's output is the graph's
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", 3, SIZE, SIZE])]
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", int(fc_w.shape[0])])]
    model = helper.make_model(
        helper.make_graph(graph.nodes, "efficientnet_lite0", inputs, outputs, graph.weights),
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="sizewise",
    )
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    checker.check_model(model)
    return bytes(model.SerializeToString())
