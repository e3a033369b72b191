"""``method: albert-embeddings``: factorize the word embeddings V x d into V x E then E x d (Lan et al., ICLR 2020,
ALBERT's factorized embedding parametrization), initialised from the table's truncated SVD, then recovered
by fine-tuning (with the step's ``distill:`` block, from the recipe's input model, when given).

The token table is where a small model's size lives (52% of MiniLM-L6's weights); E = 128 keeps
``(V*E + E*d) / (V*d)`` of it (34% for MiniLM). The FLOPs added, one E x d projection per token, are
small next to the encoder. Later steps see the factored table: int8 embeddings quantize its lookup,
augmentation reads the (V, d) product, students copy it.

Accuracy-gate fallback: double E (while below d) and run the step again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.methods.factorization.common.factored_embedding import FactoredEmbedding
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import plain_word_table, set_module
from slimbert.steps.context import StepContext
from slimbert.steps.recovery import recover
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig


@dataclass(frozen=True)
class AlbertEmbeddingsConfig(MethodConfig):
    """ALBERT embedding factorization: word embeddings V x d -> V x E then E x d (SVD initialisation), recovery."""

    factor_dim: int = 128
    train: TrainConfig | None = TrainConfig(learning_rate=5e-5, epochs=1.0)  # recovery; null: none

    def validate(self) -> None:
        if self.factor_dim < 1:
            raise ConfigError(f"factor_dim (E) must be >= 1, got {self.factor_dim}")
        if self.train is not None:
            self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        if model.embedding_factor_dim is not None:
            raise ConfigError(f"the word embeddings are already factored (E = {model.embedding_factor_dim})")
        if model.embedding_rows is not None:
            raise ConfigError("the word embeddings are already trimmed; put albert-embeddings before vocab-trim")
        if self.factor_dim >= model.hidden:
            raise ConfigError(f"factor_dim (E) {self.factor_dim} must be below the model width {model.hidden}: "
                              "V x E + E x d saves nothing otherwise")
        return replace(model, embedding_factor_dim=self.factor_dim)


def fallback(cfg: AlbertEmbeddingsConfig) -> AlbertEmbeddingsConfig:
    return replace(cfg, factor_dim=cfg.factor_dim * 2)  # plan() refuses it once it reaches the width


@register_method("albert-embeddings", AlbertEmbeddingsConfig, family="factorization", accepts_distill=True,
                 after_factorization=True, after_sharing=True, fallback=fallback)
def apply_albert_embeddings(bundle: ModelBundle, cfg: AlbertEmbeddingsConfig, ctx: StepContext) -> ModelBundle:
    """ALBERT's factorized embeddings (V x E, E x d) from the table's truncated SVD, then recovery."""
    path = bundle.arch.word_embeddings
    table = plain_word_table(bundle.model, "albert-embeddings")
    if cfg.factor_dim >= table.embedding_dim:
        raise ConfigError(f"factor_dim (E) {cfg.factor_dim} must be below the width {table.embedding_dim}")
    factored = FactoredEmbedding.from_embedding(table, cfg.factor_dim)
    set_module(bundle.model, path, factored)
    before, after = table.weight.numel(), factored.lookup.weight.numel() + factored.project.weight.numel()
    ctx.note(f"word embeddings {table.num_embeddings} x {table.embedding_dim} -> {table.num_embeddings} x "
             f"{cfg.factor_dim} + {cfg.factor_dim} x {table.embedding_dim}: {before:,} -> {after:,} weights "
             f"({before / after:.2f}x fewer)")
    recover(bundle, ctx, cfg.train, "albert-embeddings",
            f"recovery after factoring the embeddings (E = {cfg.factor_dim})")
    ctx.claim("size", "disk", True, f"word embeddings stored as V x {cfg.factor_dim} + {cfg.factor_dim} x d "
              f"({before / after:.2f}x fewer weights)")
    ctx.claim("speed", "pytorch", False, "one extra E x d projection per token; the encoder is unchanged")
    return bundle
