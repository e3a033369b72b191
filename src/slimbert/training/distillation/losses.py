"""Distillation losses (survey section 3.3), as pure functions.

Shapes: B batch, T tokens, d / d' teacher / student width, H heads, C classes. ``mask`` is the
(B, T) attention mask (1 = real token); padded positions never contribute.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-12


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T) over real tokens."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


# -- output logits ---------------------------------------------------------------------------

def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al. (2015); DistilBERT: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean.

    logits: (B, C). The T^2 factor keeps gradient magnitudes comparable across temperatures. This
    equals the soft-target cross-entropy minus the teacher's entropy (a constant).
    """
    t = F.log_softmax(teacher_logits / temperature, dim=-1)
    s = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


def logits_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Tang et al. (2019): mean squared error between logits (B, C); also the loss for regression outputs."""
    return F.mse_loss(student_logits, teacher_logits)


# -- hidden states ---------------------------------------------------------------------------

def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT (Jiao et al., 2020): MSE between hidden states (B, T, d), mean over real tokens and features.

    A width mismatch is resolved before this call by a learned projection of the student states.
    """
    return _masked_mean(((student - teacher) ** 2).mean(dim=-1), mask)


def hidden_cosine(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT (Sanh et al., 2019): cosine embedding loss ``1 - cos(s_i, t_i)`` per real token, averaged."""
    return _masked_mean(1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8), mask)


def pkd_cls(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Patient KD (Sun et al., 2019): squared distance of L2-normalised [CLS] states, (B, T, d) -> scalar."""
    s = F.normalize(student[:, 0], dim=-1)
    t = F.normalize(teacher[:, 0], dim=-1)
    return ((s - t) ** 2).sum(dim=-1).mean()


# -- attention -------------------------------------------------------------------------------

def _pair_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, 1, T, T): 1 where both query and key are real tokens."""
    m = mask.to(torch.float32)
    return (m[:, :, None] * m[:, None, :])[:, None]


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT: MSE between attention maps (B, H, T, T) over real query/key pairs; needs equal H."""
    pair = _pair_mask(mask).to(student.dtype)
    sq = ((student - teacher) ** 2) * pair
    return sq.sum() / (pair.sum() * student.shape[1]).clamp_min(1.0)


def distribution_kl(student_probs: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of row distributions (B, H, T, T), mean over heads and real query rows."""
    kl = (teacher_probs * (torch.log(teacher_probs + EPS) - torch.log(student_probs + EPS))).sum(dim=-1)  # (B, H, T)
    return _masked_mean(kl.mean(dim=1), mask)


def attention_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL between attention distributions (B, H, T, T) (MiniLM's attention transfer); needs equal H."""
    return distribution_kl(student, teacher, mask)


# -- MiniLM relations ------------------------------------------------------------------------

def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, R, T, D/R)."""
    b, t, d = x.shape
    if d % heads:
        raise ValueError(f"width {d} is not divisible into {heads} relation heads")
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def relation(left: torch.Tensor, right: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM relation: ``softmax(L_r R_r^T / sqrt(d_r))`` per relation head, keys masked. (B, T, D) -> (B, R, T, T).

    Splitting both models' projections into the same number R of relation heads is what lets
    teacher and student differ in head count and width (MiniLMv2, Wang et al. 2021).
    """
    l, r = _split_heads(left, heads), _split_heads(right, heads)
    scores = l @ r.transpose(-1, -2) / math.sqrt(l.shape[-1])
    scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1)


def relation_kl(student_left: torch.Tensor, student_right: torch.Tensor, teacher_left: torch.Tensor,
                teacher_right: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM (Wang et al., 2020): KL between teacher and student relations of the same kind.

    With (query, key) this is the self-attention distribution transfer; with (value, value) the
    value-relation transfer. Inputs (B, T, D) and (B, T, D'); D and D' must both divide by ``heads``.
    """
    teacher_rel = relation(teacher_left, teacher_right, heads, mask)
    student_rel = relation(student_left, student_right, heads, mask)
    return distribution_kl(student_rel, teacher_rel, mask)
