"""What every unstructured method does at the end: bake the masks, measure, store sparsely, say what is real."""

from __future__ import annotations

from torch import nn

from slimbert.methods.pruning.common.masked_linear import bake
from slimbert.methods.pruning.common.sparse_storage import SparseLinear, SparseStorage, store_sparse
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import layer_views
from slimbert.steps.context import StepContext


def encoder_weight_sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over every encoder linear weight matrix (biases excluded), stored sparsely or not."""
    zeros = total = 0
    for view in layer_views(model):
        for linear in view.linears().values():
            numel = linear.in_features * linear.out_features
            nonzero = linear.nnz if isinstance(linear, SparseLinear) else int((linear.weight != 0).sum())
            zeros += numel - nonzero
            total += numel
    return zeros / total


def finish_unstructured(bundle: ModelBundle, ctx: StepContext, storage: SparseStorage, target: float | None) -> float:
    """Bake masks into plain linears, store them sparsely, record claims; return the achieved sparsity."""
    bake(bundle.model)
    achieved = encoder_weight_sparsity(bundle.model)
    stored = store_sparse(bundle.model, storage)
    wanted = f" (target {target:.2%})" if target is not None else ""
    ctx.note(f"encoder linear weights {achieved:.2%} zero{wanted}; {stored} linears stored as bitmap + non-zero values")
    if storage.format == "bitmap":
        ctx.claim("size", "disk", True, f"{achieved:.1%} of encoder weights pruned; sparse linears stored as a "
                  "1-bit position bitmap + fp32 non-zero values")
    else:
        ctx.claim("size", "disk", False, "zeros stored densely (storage.format: dense): no size gain")
    if storage.kernel == "csr":
        ctx.claim("speed", "pytorch", True, "torch sparse CSR products (torch.sparse.mm) skip the zeros; whether that "
                  "beats the dense product at this sparsity is what the measurement shows")
    else:
        ctx.claim("speed", "pytorch", False, "size only: the dense kernel multiplies the zeros")
    ctx.claim("speed", "onnxruntime", False, "size only: ONNX Runtime runs the dense float graph (its CPU MatMul has "
              "no sparse kernel), zeros included")
    return achieved
