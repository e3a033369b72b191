"""``method: embedding-codebook``: product quantization of the word-embedding rows (a k-means codebook per
sub-vector; Jegou et al., TPAMI 2011), decoded by lookup at run time (see
:class:`~slimbert.methods.embedding_compression.common.codebook_embedding.CodebookEmbedding`), then optional
recovery fine-tuning of the codebooks (with the step's ``distill:`` block when given).

Cost: k-means over the V rows in each of ``subspaces`` sub-spaces (``iterations`` Lloyd steps; about a
minute for MiniLM's 30,522 x 384 table at 48 x 256).

Accuracy-gate fallback: twice the sub-spaces (shorter sub-vectors, finer codes) while they divide the width.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.methods.embedding_compression.common.codebook_embedding import CodebookEmbedding
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import plain_word_table, set_module
from slimbert.steps.context import StepContext
from slimbert.steps.recovery import recover
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig


@dataclass(frozen=True)
class EmbeddingCodebookConfig(MethodConfig):
    """Product-quantize the word embeddings: ``subspaces`` codebooks of ``centroids`` (<= 256) entries each."""

    subspaces: int = 48
    centroids: int = 256
    iterations: int = 15
    train: TrainConfig | None = None  # recovery of the codebooks; null (default): none

    def validate(self) -> None:
        if not 2 <= self.centroids <= 256:
            raise ConfigError(f"centroids must be in 2..256 (one-byte codes), got {self.centroids}")
        if self.subspaces < 1 or self.iterations < 1:
            raise ConfigError(f"subspaces and iterations must be >= 1, got {self.subspaces} and {self.iterations}")
        if self.train is not None:
            self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        if model.hidden % self.subspaces:
            raise ConfigError(f"subspaces {self.subspaces} must divide the embedding width {model.hidden}")
        if model.embedding_factor_dim is not None or model.embedding_rows is not None:
            raise ConfigError("the word embeddings are already factored or trimmed; embedding-codebook needs the "
                              "plain table")
        return replace(model, embedding_rows=model.vocab_size)


def fallback(cfg: EmbeddingCodebookConfig) -> EmbeddingCodebookConfig:
    return replace(cfg, subspaces=cfg.subspaces * 2)  # plan() refuses it once it stops dividing the width


@register_method("embedding-codebook", EmbeddingCodebookConfig, family="embedding-compression", accepts_distill=True,
                 after_factorization=True, after_sharing=True, fallback=fallback)
def apply_embedding_codebook(bundle: ModelBundle, cfg: EmbeddingCodebookConfig, ctx: StepContext) -> ModelBundle:
    """Product quantization (k-means codebooks) of the word embeddings, decoded by lookup at run time."""
    path = bundle.arch.word_embeddings
    table = plain_word_table(bundle.model, "embedding-codebook")
    if table.embedding_dim % cfg.subspaces:
        raise ConfigError(f"subspaces {cfg.subspaces} must divide the embedding width {table.embedding_dim}")
    coded = CodebookEmbedding.from_embedding(table, cfg.subspaces, cfg.centroids, cfg.iterations,
                                             seed=ctx.settings.seed)
    set_module(bundle.model, path, coded)
    error = float((coded.weight.detach() - table.weight.detach()).norm() / table.weight.detach().norm())
    stored = coded.codes.numel() + coded.codebooks.numel() * 4
    ctx.note(f"word embeddings product-quantized: {cfg.subspaces} sub-spaces x {cfg.centroids} centroids; "
             f"{table.weight.numel() * 4 / 1e6:.1f} MB -> {stored / 1e6:.2f} MB; relative reconstruction error "
             f"{error:.3f}")
    recover(bundle, ctx, cfg.train, "embedding-codebook", "recovery of the embedding codebooks")
    ctx.claim("size", "disk", True, f"word embeddings as one-byte codes + codebooks ({stored / 1e6:.2f} MB)")
    ctx.claim("speed", "pytorch", False, "decoding costs two lookups per token; the encoder is unchanged")
    return bundle
