"""Word-embedding quantization, shared by every quantization method (``embedding_bits``).

The word embeddings are half of MiniLM-L6's weights and a fifth of BERT-base's, so a low-bit
encoder with an fp32 table is still large on disk. 8 bits reuse
:class:`~slimbert.methods.quantization.common.int8_modules.Int8Embedding` (int8 rows, one scale per row);
fewer bits store a :class:`~slimbert.methods.quantization.common.packed.PackedEmbedding`. Methods that
train wrap the table in a :class:`~slimbert.methods.quantization.common.fake_quant.FakeQuantEmbedding`
(quantization-aware, row-wise) and bake it afterwards; the others quantize it post-training.
Position and token-type embeddings (under 1% of the weights) stay fp32. Factored word embeddings
(ALBERT's V x E lookup + E x d projection) have their lookup table quantized; the projection stays fp32.
"""

from __future__ import annotations

import torch
from torch import nn

from slimbert.methods.quantization.common.fake_quant import FakeQuantEmbedding, UniformWeightQuantizer, WeightQuantizer
from slimbert.methods.quantization.common.int8_modules import Int8Embedding
from slimbert.methods.quantization.common.packed import PackedEmbedding
from slimbert.models.bundle import ModelBundle
from slimbert.models.module_kinds import is_factored_module
from slimbert.models.structure import get_module, set_module


def word_table_path(bundle: ModelBundle) -> str:
    """Path of the word-embedding table to quantize: the embeddings themselves, or the lookup table (the one
    ``nn.Embedding`` part) of factored embeddings."""
    path = bundle.arch.word_embeddings
    module = get_module(bundle.model, path)
    if is_factored_module(module):
        tables = [name for name, child in module.named_children()
                  if isinstance(child, (nn.Embedding, FakeQuantEmbedding))]
        if len(tables) == 1:
            return f"{path}.{tables[0]}"
    return path


def embedding_from_codes(embedding: nn.Embedding, codes: torch.Tensor, scales: torch.Tensor, bits: int) -> nn.Module:
    """An int8 (8 bits) or packed (fewer bits) table from row-wise codes (V, d) and scales (V, 1)."""
    if bits == 8:
        table = Int8Embedding(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx)
        table.weight_int8.copy_(codes)
        table.weight_scale.copy_(scales.reshape(-1))
        return table
    table = PackedEmbedding(embedding.num_embeddings, embedding.embedding_dim, bits, "uniform", row_block=1,
                            padding_idx=embedding.padding_idx)
    table.set_uniform(codes, scales)
    return table


def quantize_word_embeddings(bundle: ModelBundle, bits: int | None,
                             quantizer: WeightQuantizer | None = None) -> str | None:
    """Post-training: replace the word embeddings by an int8/packed table; return what was done."""
    if bits is None:
        return None
    path = word_table_path(bundle)
    embedding = get_module(bundle.model, path)
    quantizer = quantizer or UniformWeightQuantizer(bits, row_block=1)
    codes, scales = quantizer.quantize(embedding.weight)
    set_module(bundle.model, path, embedding_from_codes(embedding, codes, scales, bits))
    return f"word embeddings stored in {bits} bits (one scale per row)"


def wrap_word_embeddings(bundle: ModelBundle, bits: int | None,
                         quantizer: WeightQuantizer | None = None) -> FakeQuantEmbedding | None:
    """Training: fake-quantize the word embeddings (row-wise) so the model learns around them."""
    if bits is None:
        return None
    path = word_table_path(bundle)
    wrapper = FakeQuantEmbedding(get_module(bundle.model, path), quantizer or UniformWeightQuantizer(bits, row_block=1))
    set_module(bundle.model, path, wrapper)
    return wrapper


def bake_word_embeddings(bundle: ModelBundle, wrapper: FakeQuantEmbedding | None) -> str | None:
    """Replace a :func:`wrap_word_embeddings` wrapper by the stored int8/packed table."""
    if wrapper is None:
        return None
    path = word_table_path(bundle)
    set_module(bundle.model, path, wrapper.embedding)
    return quantize_word_embeddings(bundle, wrapper.weight_quantizer.bits, wrapper.weight_quantizer)
