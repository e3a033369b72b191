"""Distillation as loss terms of the one training loop: pure losses, layer matches as data, and the
term that runs the frozen teacher (used by the ``distill`` method and by any step's ``distill:`` block)."""
