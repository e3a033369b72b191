"""DistillationLoss: one loss term of the training loop holding the frozen teacher.

It runs the teacher once per batch (no gradients) and adds up the logits loss and every layer
match. Width projections (student width -> teacher width) are created here when needed: they are
trained with the student and are not part of it, so they vanish at export.
"""

from __future__ import annotations

import torch
from torch import nn

from slimbert.models.outputs import ModelOutputs, ProjectionCapture, model_outputs
from slimbert.models.structure import config_value
from slimbert.training.distillation import losses as L
from slimbert.training.distillation.matches import LayerMatch
from slimbert.training.losses import LossTerm

RELATIONS = {"attention_relation": ("query", "key"), "value_relation": ("value", "value")}


class DistillationLoss(LossTerm):
    """``logits_weight * logits_loss + sum(match.weight * match_loss)``.

    ``logits_loss``: "kl" (soft cross-entropy at ``temperature``), "mse" (Tang et al.), or "none".
    """

    name = "distill"

    def __init__(self, teacher: nn.Module, student: nn.Module, matches: list[LayerMatch], *, logits_loss: str = "kl",
                 temperature: float = 1.0, logits_weight: float = 1.0, relation_heads: int | None = None,
                 weight: float = 1.0):
        super().__init__(weight)
        self._teacher = [teacher.eval()]  # a list: not a submodule, so never trained, saved or wrapped
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.matches = list(matches)
        self.logits_loss = logits_loss
        self.temperature = temperature
        self.logits_weight = logits_weight
        self.relation_heads = relation_heads or config_value(teacher, "heads")
        features = {m.feature for m in self.matches}
        self.needs_hidden_states = bool(features & {"hidden", "embedding"})
        self.needs_attentions = "attention" in features
        self.needs_projections = bool(features & set(RELATIONS))
        if self.needs_attentions and hasattr(teacher, "set_attn_implementation"):
            teacher.set_attn_implementation("eager")
        self._student_capture = ProjectionCapture(student) if self.needs_projections else None
        # Learned projections for hidden/embedding matches whose widths differ (TinyBERT's W_h).
        t_width, s_width = config_value(teacher, "hidden"), config_value(student, "hidden")
        self.projections = nn.ModuleDict()
        for i, m in enumerate(self.matches):
            if m.feature in ("hidden", "embedding") and t_width != s_width:
                self.projections[str(i)] = nn.Linear(s_width, t_width)
        self.parts: dict[str, float] = {}

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def close(self) -> None:
        """Remove hooks from the student (before it is saved or copied)."""
        if self._student_capture is not None:
            self._student_capture.remove()
            self._student_capture = None

    def teacher_outputs(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        device = batch["input_ids"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            return model_outputs(self.teacher, batch, hidden=self.needs_hidden_states, attentions=self.needs_attentions,
                                 projections=self.needs_projections)

    def forward(self, batch, outputs, model):
        teacher = self.teacher_outputs(batch)
        student = ModelOutputs.from_hf(outputs, batch["attention_mask"], self._student_capture)
        total = torch.zeros((), device=student.logits.device)
        parts = {}
        if self.logits_loss != "none" and self.logits_weight > 0:
            if self.logits_loss == "kl":
                value = L.soft_cross_entropy(student.logits, teacher.logits, self.temperature)
            else:
                value = L.logits_mse(student.logits, teacher.logits)
            parts["logits"] = float(value.detach())
            total = total + self.logits_weight * value
        for i, match in enumerate(self.matches):
            value = self.match_loss(i, match, student, teacher)
            parts[f"{match.feature}{match.student}"] = float(value.detach())
            total = total + match.weight * value
        self.parts = parts
        return total

    def match_loss(self, i: int, match: LayerMatch, s: ModelOutputs, t: ModelOutputs) -> torch.Tensor:
        mask = s.attention_mask
        if match.feature in ("hidden", "embedding"):
            s_index, t_index = (0, 0) if match.feature == "embedding" else (match.student, match.teacher)
            s_h, t_h = s.hidden_states[s_index], t.hidden_states[t_index]
            if str(i) in self.projections:
                s_h = self.projections[str(i)](s_h)
            return {"mse": L.hidden_mse, "cosine": L.hidden_cosine}[match.loss_name](s_h, t_h, mask) \
                if match.loss_name != "pkd" else L.pkd_cls(s_h, t_h)
        if match.feature == "attention":
            s_a, t_a = s.attentions[match.student - 1], t.attentions[match.teacher - 1]
            if s_a.shape[1] != t_a.shape[1]:
                raise ValueError(
                    f"attention match needs equal head counts (student {s_a.shape[1]}, teacher {t_a.shape[1]}); "
                    "use feature: attention_relation, which works across head counts")
            return L.attention_mse(s_a, t_a, mask) if match.loss_name == "mse" else L.attention_kl(s_a, t_a, mask)
        left, right = RELATIONS[match.feature]
        sp, tp = s.projections, t.projections
        return L.relation_kl(sp[left][match.student - 1], sp[right][match.student - 1],
                             tp[left][match.teacher - 1], tp[right][match.teacher - 1], self.relation_heads, mask)
