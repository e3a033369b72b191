"""Cross-layer parameter sharing (``share-layers``) and ALBERT embedding factorization (``albert-embeddings``):
tied weights survive save -> load and are stored and counted once; the factored table keeps downstream steps
working (int8 embeddings, augmentation, students); clear errors before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import run_steps

from slimbert.data.loaders import Example
from slimbert.data.tasks import get_task
from slimbert.errors import ConfigError
from slimbert.export.onnx import export_onnx, onnx_logits, onnx_session, sample_batch
from slimbert.measure.flops import flops_per_example
from slimbert.measure.size import count_parameters
from slimbert.methods.distillation.distill.augment import AugmentConfig, Augmenter
from slimbert.methods.factorization.common.factored_embedding import FactoredEmbedding
from slimbert.models.artifact import WEIGHTS_NAME, load_compressed, save_compressed
from slimbert.models.loading import load_model
from slimbert.models.shape import shape_of, shape_of_spec
from slimbert.models.structure import get_module, layer_views
from slimbert.recipe import Recipe
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

QUICK = {"max_steps": 2, "batch_size": 8, "eval_batch_size": 32}


@pytest.fixture(scope="module")
def task_data(tiny_glue):
    return TaskDataset(get_task("sst2"), RunSettings(data_dir=str(tiny_glue), max_train_samples=32,
                                                     max_eval_samples=16))


def _logits(model, batch):
    with torch.no_grad():
        return model.eval()(**batch).logits.numpy()


def test_shared_layers_are_tied_stored_once_and_counted_once(tiny_bert_dir, task_data, tmp_path):
    bundle = load_model(tiny_bert_dir, task_data.task)
    plain_dir = tmp_path / "plain"
    save_compressed(bundle, plain_dir)
    params_before, flops_before = count_parameters(bundle.model)["total"], flops_per_example(bundle.model, 16)
    layer_weights = sum(p.numel() for p in layer_views(bundle.model)[0].layer.parameters())

    share = {"method": "share-layers", "group_size": 2, "train": QUICK}
    out, ctx = run_steps(bundle.clone(), [share], task_data, tmp_path)
    first, second = layer_views(out.model)
    assert first.query is second.query and first.ffn_out is second.ffn_out and first.attn_norm is second.attn_norm
    assert count_parameters(out.model)["total"] == params_before - layer_weights  # one of the two layers' weights
    assert flops_per_example(out.model, 16) == flops_before  # sharing saves size, not FLOPs
    assert any("FLOPs unchanged" in n for n in ctx.notes)

    shared_dir = tmp_path / "shared"
    save_compressed(out, shared_dir)
    saved = (plain_dir / WEIGHTS_NAME).stat().st_size - (shared_dir / WEIGHTS_NAME).stat().st_size
    assert saved >= 4 * layer_weights * 0.95  # one layer's fp32 weights fewer on disk
    reloaded = load_compressed(shared_dir)
    a, b = layer_views(reloaded.model)
    assert a.query.weight.data_ptr() == b.query.weight.data_ptr() and a.ffn_in is b.ffn_in  # still tied
    assert shape_of_spec(shared_dir).shared_layers
    batch = sample_batch(out)
    np.testing.assert_allclose(_logits(reloaded.model, batch), _logits(out.model, batch), atol=1e-5)
    # Training the reloaded model keeps them tied: one tensor.
    with torch.no_grad():
        a.query.weight.add_(1.0)
    assert torch.equal(a.query.weight, b.query.weight)


def test_sharing_only_the_ffn_and_then_int8_keeps_one_copy(tiny_bert_dir, task_data, tmp_path):
    bundle = load_model(tiny_bert_dir, task_data.task)
    out, _ = run_steps(bundle, [{"method": "share-layers", "share": "ffn", "init": "first", "train": None},
                           {"method": "dynamic-int8"}], task_data, tmp_path)
    first, second = layer_views(out.model)
    assert first.ffn_in is second.ffn_in and first.query is not second.query
    assert type(first.ffn_in).__name__ == "Int8DynamicLinear"
    save_compressed(out, tmp_path / "a")
    reloaded = load_compressed(tmp_path / "a")
    r1, r2 = layer_views(reloaded.model)
    assert r1.ffn_in is r2.ffn_in
    batch = sample_batch(out)
    np.testing.assert_allclose(_logits(reloaded.model, batch), _logits(out.model, batch), atol=1e-5)


def test_albert_embeddings_svd_init_and_downstream_steps(tiny_bert_dir, task_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMBERT_CACHE", str(tmp_path / "cache"))
    bundle = load_model(tiny_bert_dir, task_data.task)
    table = get_module(bundle.model, bundle.arch.word_embeddings)
    full = FactoredEmbedding.from_embedding(table, table.embedding_dim)  # full rank: the same table
    torch.testing.assert_close(full.weight, table.weight, atol=1e-5, rtol=1e-5)
    ids = torch.tensor([[1, 5, 9]])
    torch.testing.assert_close(full(ids), table(ids), atol=1e-5, rtol=1e-5)

    out, _ = run_steps(bundle.clone(), [{"method": "albert-embeddings", "factor_dim": 8, "train": QUICK},
                                   {"method": "dynamic-int8", "quantize_embeddings": True}], task_data, tmp_path)
    emb = get_module(out.model, out.arch.word_embeddings)
    assert isinstance(emb, FactoredEmbedding) and type(emb.lookup).__name__ == "Int8Embedding"
    assert count_parameters(out.model)["total"] < count_parameters(bundle.model)["total"]
    save_compressed(out, tmp_path / "artifact")
    assert shape_of_spec(tmp_path / "artifact").embedding_factor_dim == 8
    reloaded = load_compressed(tmp_path / "artifact")
    batch = sample_batch(out)
    ours = _logits(reloaded.model, batch)
    np.testing.assert_allclose(ours, _logits(out.model, batch), atol=1e-5)
    exported = export_onnx(reloaded, tmp_path / "model.onnx")
    assert np.abs(onnx_logits(onnx_session(exported.path), batch) - ours).max() <= 0.1 * max(np.abs(ours).max(), 1)

    # Augmentation reads the factored table's (V, d) product; a student copies the factored block.
    factor_only = {"method": "albert-embeddings", "factor_dim": 8, "train": None}
    factored, _ = run_steps(bundle.clone(), [factor_only], task_data,
                       tmp_path / "second")
    cfg = AugmentConfig(copies=2, replace_prob=0.5, mask_prob=0.0, ngram_prob=0.0, neighbours=3, seed=1)
    augmented = Augmenter(cfg, factored.tokenizer, factored.model).generate([Example(("a good fun movie",), 1)])
    assert len(augmented) == 2
    student, _ = run_steps(factored, [{"method": "student", "num_layers": 1}], task_data, tmp_path / "third")
    assert isinstance(get_module(student.model, student.arch.word_embeddings), FactoredEmbedding)


@pytest.mark.parametrize("steps, message", [
    ([{"method": "share-layers", "group_size": 3}], "does not divide the model's 2 layers"),
    ([{"method": "share-layers", "group_size": 1}], "group_size must be >= 2"),
    ([{"method": "prune-heads", "fraction": 0.25}, {"method": "share-layers"}], "different shapes"),
    ([{"method": "share-layers"}, {"method": "prune-ffn", "fraction": 0.3}], "already share modules"),
    ([{"method": "albert-embeddings", "factor_dim": 32}], "must be below the model width 32"),
    ([{"method": "albert-embeddings", "factor_dim": 8}, {"method": "albert-embeddings", "factor_dim": 4}],
     "already factored"),
])
def test_bad_configs_fail_before_any_work(tiny_bert_dir, steps, message):
    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    with pytest.raises(ConfigError, match=message):
        Recipe.from_dict({"name": "bad", "steps": steps}).check(shape_of(bundle.model))


def test_a_damaged_shared_modules_entry_is_a_clean_error(tiny_bert_dir, tmp_path):
    import json

    from slimbert.errors import ModelLoadError

    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    save_compressed(bundle, tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / "slimbert.json").read_text())
    manifest["shared_modules"] = {"bert.encoder.layer.1.attention": "bert.encoder.layer.7.attention"}
    (tmp_path / "a" / "slimbert.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="cannot share module"):
        load_compressed(tmp_path / "a")


def test_vocab_trim_keeps_logits_on_kept_text_and_maps_the_rest_to_unk(tiny_bert_dir, task_data, tmp_path):
    from slimbert.methods.embedding_compression.common.trimmed_embedding import TrimmedEmbedding

    bundle = load_model(tiny_bert_dir, task_data.task)
    out, ctx = run_steps(bundle.clone(), [{"method": "vocab-trim"}], task_data, tmp_path)
    emb = get_module(out.model, out.arch.word_embeddings)
    assert isinstance(emb, TrimmedEmbedding) and emb.kept < emb.num_embeddings
    assert any("coverage" in n for n in ctx.notes)
    tok = bundle.tokenizer
    from slimbert.data.encoding import encode

    # All the training text is kept, not only the --max-train-samples subset the run trains on.
    all_train = encode(task_data.train_examples(subsample=False), tok, task_data.settings.seq_len)
    train_ids = {i for ids in all_train.features["input_ids"] for i in ids}
    assert len(all_train) > len(task_data.train_set(tok))
    kept_text = tok.decode(sorted(train_ids - set(tok.all_special_ids))[:6])
    batch = tok([kept_text], return_tensors="pt")
    assert set(batch["input_ids"][0].tolist()) <= train_ids | set(tok.all_special_ids)
    np.testing.assert_allclose(_logits(out.model, dict(batch)), _logits(bundle.model, dict(batch)), atol=1e-6)
    # A piece never seen in training reads the [UNK] row.
    unseen = sorted(set(range(emb.num_embeddings)) - train_ids - set(tok.all_special_ids))[0]
    ids = torch.tensor([[tok.cls_token_id, unseen, tok.sep_token_id]])
    unk = torch.tensor([[tok.cls_token_id, tok.unk_token_id, tok.sep_token_id]])
    torch.testing.assert_close(emb(ids), emb(unk))
    save_compressed(out, tmp_path / "artifact")
    reloaded = load_compressed(tmp_path / "artifact")
    assert shape_of_spec(tmp_path / "artifact").embedding_rows == emb.kept
    assert torch.equal(get_module(reloaded.model, reloaded.arch.word_embeddings).remap, emb.remap)
    assert (tmp_path / "artifact" / WEIGHTS_NAME).stat().st_size < (
        4 * (emb.num_embeddings - emb.kept) * emb.embedding_dim * 0.5 + 4 * count_parameters(bundle.model)["total"])


def test_vocab_trim_adds_a_corpus_and_refuses_a_run_without_training_data(tiny_bert_dir, tiny_glue, task_data,
                                                                          tmp_path):
    from slimbert.errors import DataError

    bundle = load_model(tiny_bert_dir, task_data.task)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("zzz qqq xxx\nzzz qqq\nzzz\n")
    plain, _ = run_steps(bundle.clone(), [{"method": "vocab-trim"}], task_data, tmp_path / "a")
    wider, _ = run_steps(bundle.clone(), [{"method": "vocab-trim", "corpus": str(corpus), "corpus_top": 3}],
                         task_data, tmp_path / "b")
    kept = [get_module(m.model, m.arch.word_embeddings).kept for m in (plain, wider)]
    assert kept[0] < kept[1]
    # A task whose training split is empty (a shortened run still trims by all the training text, so an empty
    # split is the way to have none).
    import shutil

    glue = tmp_path / "glue"
    shutil.copytree(tiny_glue, glue)
    train = glue / "SST-2" / "train.tsv"
    train.write_text(train.read_text().splitlines()[0] + "\n")
    empty = TaskDataset(get_task("sst2"), RunSettings(data_dir=str(glue), max_eval_samples=8))
    with pytest.raises((DataError, ConfigError), match="train"):
        run_steps(bundle.clone(), [{"method": "vocab-trim"}], empty, tmp_path / "c")
    with pytest.raises(ConfigError, match="is not a file"):
        Recipe.from_dict({"name": "bad", "steps": [{"method": "vocab-trim", "corpus": str(tmp_path / "none.txt"),
                                                     "corpus_top": 5}]})


def test_kmeans_finds_separated_clusters():
    from slimbert.methods.embedding_compression.common.codebook_embedding import kmeans

    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=gen) for c in centres])
    found, assign = kmeans(points, 3, iterations=10, seed=0)
    matched = torch.cdist(centres, found).min(dim=1).values
    assert float(matched.max()) < 0.1
    assert len(set(assign[:50].tolist())) == 1 and len(set(assign.tolist())) == 3


def test_embedding_codebook_decodes_exactly_with_enough_centroids_and_stays_small_in_onnx(tiny_bert_dir, task_data,
                                                                                         tmp_path):
    from slimbert.methods.embedding_compression.common.codebook_embedding import CodebookEmbedding

    bundle = load_model(tiny_bert_dir, task_data.task)
    table = get_module(bundle.model, bundle.arch.word_embeddings)
    exact = CodebookEmbedding.from_embedding(table, subspaces=4, centroids=table.num_embeddings, iterations=2)
    torch.testing.assert_close(exact.weight, table.weight, atol=1e-6, rtol=0)  # each row its own centroid

    out, ctx = run_steps(bundle.clone(), [{"method": "embedding-codebook", "subspaces": 4, "centroids": 16,
                                           "iterations": 5}], task_data, tmp_path)
    coded = get_module(out.model, out.arch.word_embeddings)
    assert isinstance(coded, CodebookEmbedding) and coded.codes.dtype == torch.uint8
    assert any("reconstruction error" in n for n in ctx.notes)
    save_compressed(out, tmp_path / "artifact")
    reloaded = load_compressed(tmp_path / "artifact")
    batch = sample_batch(out)
    ours = _logits(reloaded.model, batch)
    np.testing.assert_allclose(ours, _logits(out.model, batch), atol=1e-5)
    exported = export_onnx(reloaded, tmp_path / "model.onnx")
    np.testing.assert_allclose(onnx_logits(onnx_session(exported.path), batch), ours, atol=1e-4)
    import onnx

    initializers = onnx.load(str(exported.path)).graph.initializer
    assert not any(tuple(i.dims) == (table.num_embeddings, table.embedding_dim) for i in initializers)


def test_vocab_trim_may_follow_int8_of_the_encoder(tiny_bert_dir, task_data, tmp_path):
    bundle = load_model(tiny_bert_dir, task_data.task)
    out, _ = run_steps(bundle.clone(), [{"method": "dynamic-int8"}, {"method": "vocab-trim"}], task_data, tmp_path)
    save_compressed(out, tmp_path / "artifact")
    reloaded = load_compressed(tmp_path / "artifact")
    batch = sample_batch(out)
    np.testing.assert_allclose(_logits(reloaded.model, batch), _logits(out.model, batch), atol=1e-5)
    with pytest.raises(ConfigError, match="plain embedding table"):
        run_steps(bundle.clone(), [{"method": "dynamic-int8", "quantize_embeddings": True}, {"method": "vocab-trim"}],
                  task_data, tmp_path / "b")
