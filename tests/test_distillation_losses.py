"""Distillation losses against hand-computed values and equivalent forms; layer matches and presets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from slimbert.errors import ConfigError
from slimbert.training.distillation import losses as L
from slimbert.training.distillation.matches import LayerMatch, preset_matches


def test_soft_cross_entropy_hand_computed():
    s = torch.tensor([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    t = torch.tensor([[0.0, 0.0]])  # softmax = (1/2, 1/2)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert L.soft_cross_entropy(s, t, 1.0).item() == pytest.approx(expected, rel=1e-6)
    assert L.soft_cross_entropy(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_soft_cross_entropy_equals_cross_entropy_minus_entropy():
    torch.manual_seed(0)
    s, t, temp = torch.randn(5, 3), torch.randn(5, 3), 2.0
    p_t = F.softmax(t / temp, -1)
    ce = -(p_t * F.log_softmax(s / temp, -1)).sum(-1).mean()
    entropy = -(p_t * p_t.log()).sum(-1).mean()
    assert L.soft_cross_entropy(s, t, temp).item() == pytest.approx(((ce - entropy) * temp**2).item(), rel=1e-5)


def test_logits_mse():
    assert L.logits_mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(2.5)


def test_hidden_losses_ignore_padding():
    s = torch.zeros(1, 3, 2)
    t = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert L.hidden_mse(s, t, mask).item() == pytest.approx((1.0 + 2.0) / 2)  # per-token means 1 and 2
    same = L.hidden_cosine(t, t * 3, mask)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    opposite = L.hidden_cosine(-t, t, mask)
    assert opposite.item() == pytest.approx(2.0, abs=1e-6)


def test_pkd_uses_normalised_cls():
    s = torch.tensor([[[3.0, 0.0], [9.0, 9.0]]])
    t = torch.tensor([[[0.0, 5.0], [1.0, 1.0]]])
    assert L.pkd_cls(s, t).item() == pytest.approx(2.0)  # |(1,0) - (0,1)|^2
    assert L.pkd_cls(s, s * 7).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_losses():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    b = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    mask = torch.ones(2, 5)
    assert L.attention_mse(a, a, mask).item() == 0.0
    assert L.attention_mse(a, b, mask).item() == pytest.approx(((a - b) ** 2).mean().item(), rel=1e-5)
    kl = (b * (b.log() - a.log())).sum(-1).mean()
    assert L.attention_kl(a, b, mask).item() == pytest.approx(kl.item(), rel=1e-4)


def test_relation_equals_attention_when_heads_match():
    """With R = H, the query-key relation is the model's own attention distribution."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    rel = L.relation(q, k, heads=2, mask=mask)
    qh, kh = q.view(2, 6, 2, 4).transpose(1, 2), k.view(2, 6, 2, 4).transpose(1, 2)
    scores = qh @ kh.transpose(-1, -2) / 2.0 + (1 - mask[:, None, None, :].float()) * -1e9
    assert torch.allclose(rel, scores.softmax(-1), atol=1e-6)
    assert rel[1, :, :, 4:].abs().max() == 0  # padded keys get no attention


def test_relation_kl_works_across_widths():
    torch.manual_seed(0)
    mask = torch.ones(2, 5)
    t_v, s_v = torch.randn(2, 5, 12), torch.randn(2, 5, 6, requires_grad=True)
    loss = L.relation_kl(s_v, s_v, t_v, t_v, heads=3, mask=mask)
    loss.backward()
    assert loss.item() > 0 and s_v.grad.abs().sum() > 0
    assert L.relation_kl(t_v, t_v, t_v, t_v, heads=3, mask=mask).item() == pytest.approx(0.0, abs=1e-6)


def test_presets():
    assert [(m.teacher, m.student) for m in preset_matches("uniform", 6, 3)] == [(0, 0), (2, 1), (4, 2), (6, 3)]
    assert [(m.teacher, m.student) for m in preset_matches("uniform", 6, 3, "attention")] == [(2, 1), (4, 2), (6, 3)]
    assert [(m.teacher, m.student) for m in preset_matches("pkd-skip", 12, 6)] == [(2, 1), (4, 2), (6, 3), (8, 4), (10, 5)]
    assert [(m.teacher, m.student) for m in preset_matches("pkd-last", 12, 6)] == [(7, 1), (8, 2), (9, 3), (10, 4), (11, 5)]
    assert [(m.teacher, m.student) for m in preset_matches("last", 6, 3, "value_relation")] == [(6, 3)]
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_matches("skip", 6, 3)


def test_layer_match_validation():
    with pytest.raises(ConfigError) as exc:
        LayerMatch(teacher=7, student=1).check_layers(6, 3)
    assert "teacher layer 7 is out of range; the teacher has 6 layers, valid hidden-state indices 0 (embeddings) ..6" \
        in str(exc.value)
    with pytest.raises(ConfigError, match="student layer 0 is out of range.*valid layers 1..3"):
        LayerMatch(teacher=2, student=0, feature="attention").check_layers(6, 3)
    with pytest.raises(ConfigError, match="does not apply to feature 'attention'"):
        LayerMatch(feature="attention", loss="cosine").validate()
