"""Knowledge distillation (survey section 3.3).

Methods (one file or subpackage per registered name):

* ``student`` (:mod:`.student`): replace the model by a smaller student built from it;
* ``distill`` (:mod:`.distill`): train the current model against a teacher (logits, hidden
  states, attention maps, MiniLM relations as layer matches; data augmentation).

The losses and the layer matches themselves are training machinery
(:mod:`slimbert.training.distillation`): any training step of a recipe can distil from the
recipe's teacher with a ``distill:`` block (:mod:`slimbert.steps.teacher`).
"""

from slimbert.methods.distillation import distill, student  # noqa: F401
