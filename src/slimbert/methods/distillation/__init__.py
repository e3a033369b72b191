"""Knowledge distillation (survey section 3.3): students, losses, layer matches, augmentation."""

from slimbert.methods.distillation import distill, students  # noqa: F401
