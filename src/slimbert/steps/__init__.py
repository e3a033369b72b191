"""The step machinery: the method registry, what a step gets (:class:`~slimbert.steps.context.StepContext`),
and the options every step may carry besides its method's config (a teacher to distil from)."""
