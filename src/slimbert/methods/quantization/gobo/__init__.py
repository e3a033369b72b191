"""GOBO: outlier-aware clustering of weights, no fine-tuning (``method: gobo``; Zadeh et al. 2020).

Each encoder linear's weight matrix (and, with ``embedding_bits``, the word-embedding table) is
encoded by :func:`~slimbert.methods.quantization.gobo.clustering.gobo_encode`: the few weights outside
``outlier_std`` standard deviations of the layer's Gaussian stay fp32 (stored sparsely with their
positions), the rest become b-bit indices into 2^b refined centroids (default 3 bits). The result
is stored in :class:`~slimbert.methods.quantization.common.packed.PackedLinear` (codebook scheme), so
the file is as small as the encoding: about b bits per weight plus 64 bits per outlier.

No data and no training. What is real: the size on disk. There is no kernel for 3-bit codebook
weights here, so both runtimes compute with the decoded fp32 weights (no speedup).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from slimbert.config import check_range
from slimbert.errors import ConfigError
from slimbert.methods.quantization.common.accuracy_gate import QuantStepConfig, enforce_accuracy
from slimbert.methods.quantization.common.lowbit import encoder_linears, int8_fallback, layer_fallback, stored_bits
from slimbert.methods.quantization.common.packed import PackedEmbedding, PackedLinear
from slimbert.methods.quantization.common.uniform import check_bits
from slimbert.methods.quantization.gobo.clustering import DEFAULT_OUTLIER_STD, MAX_ITERATIONS, GoboCode, gobo_encode
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import get_module, set_module
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method


@dataclass(frozen=True)
class GoboConfig(QuantStepConfig):
    """GOBO: per-layer Gaussian outliers kept fp32, other weights on 2^bits refined centroids; no fine-tuning."""

    bits: int = 3
    outlier_std: float = DEFAULT_OUTLIER_STD
    max_iterations: int = MAX_ITERATIONS

    def validate(self) -> None:
        super().validate()
        check_bits(self.bits, "bits")
        check_range("outlier_std", self.outlier_std, 0, None, low_inclusive=False)
        if self.max_iterations < 1:
            raise ConfigError(f"max_iterations must be >= 1, got {self.max_iterations}")


def fill_codebook(packed: PackedLinear | PackedEmbedding, code: GoboCode) -> PackedLinear | PackedEmbedding:
    packed.set_codebook(code.indices, code.codebook, code.outlier_index, code.outlier_value)
    return packed


def gobo_linear(linear: nn.Linear, cfg: GoboConfig) -> tuple[PackedLinear, GoboCode]:
    code = gobo_encode(linear.weight, cfg.bits, cfg.outlier_std, cfg.max_iterations)
    packed = PackedLinear.empty_like(linear, cfg.bits, "codebook", outliers=code.outlier_index.numel())
    return fill_codebook(packed, code), code


def gobo_embeddings(bundle: ModelBundle, cfg: GoboConfig) -> str | None:
    if cfg.embedding_bits is None:
        return None
    path = bundle.arch.word_embeddings
    emb = get_module(bundle.model, path)
    code = gobo_encode(emb.weight, cfg.embedding_bits, cfg.outlier_std, cfg.max_iterations)
    packed = PackedEmbedding(emb.num_embeddings, emb.embedding_dim, cfg.embedding_bits, "codebook",
                             outliers=code.outlier_index.numel(), padding_idx=emb.padding_idx)
    set_module(bundle.model, path, fill_codebook(packed, code))
    return (f"word embeddings GOBO-encoded at {cfg.embedding_bits} bits "
            f"({100 * code.outlier_index.numel() / emb.weight.numel():.2f}% fp32 outliers)")


@register_method("gobo", GoboConfig, family="quantization", quantizes=True, fallback="layers")
def apply_gobo(bundle: ModelBundle, cfg: GoboConfig, ctx: StepContext) -> ModelBundle:
    """GOBO: encoder weights as b-bit centroid indices plus fp32 Gaussian outliers, without fine-tuning."""
    model = bundle.model
    originals = {path: module for path, (_, module) in encoder_linears(model).items()}
    final, outliers, weights, iterations = {}, 0, 0, []
    for path, linear in originals.items():
        final[path], code = gobo_linear(linear, cfg)
        set_module(model, path, final[path])
        outliers += code.outlier_index.numel()
        weights += linear.weight.numel()
        iterations.append(code.iterations)
    embeddings = gobo_embeddings(bundle, cfg)
    fallback = layer_fallback(model, final, int8_fallback(originals))
    restored = enforce_accuracy(bundle, ctx, "gobo", fallback)
    average = stored_bits(model, list(final))
    ctx.note(f"GOBO: {100 * outliers / weights:.3f}% of encoder weights are fp32 outliers (> {cfg.outlier_std} std); "
             f"centroid refinement took {min(iterations)}-{max(iterations)} iterations; {average:.2f} stored bits per "
             "weight" + (f"; layers {restored} fell back to int8" if restored else ""))
    ctx.claim("size", "disk", True, f"{cfg.bits}-bit centroid indices + per-layer codebooks + sparse fp32 outliers "
              f"({average:.2f} bits/weight stored)" + (f"; {embeddings}" if embeddings else ""))
    ctx.claim("speed", "pytorch", False, f"no {cfg.bits}-bit codebook kernel: weights are decoded to fp32 at load")
    ctx.claim("speed", "onnxruntime", False, f"no {cfg.bits}-bit codebook kernel: the ONNX graph holds the decoded "
                                             "fp32 weights (same size and speed as fp32)")
    return bundle
