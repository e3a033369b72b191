"""Every training-based pruning method resumes after an interruption and ends where an uninterrupted run
ends (module structure is fixed while the loop runs; structure changes happen between runs, replayed
deterministically on a rerun)."""

from __future__ import annotations

import pytest
import torch

from slimbert.methods.pruning.block_movement import BlockMovementConfig, apply_block_movement
from slimbert.methods.pruning.common.schedules import CubicSchedule
from slimbert.methods.pruning.layerdrop import LayerDropConfig, apply_layerdrop
from slimbert.methods.pruning.magnitude import MagnitudeConfig, apply_magnitude
from slimbert.methods.pruning.movement import MovementConfig, apply_movement
from slimbert.methods.pruning.prune_heads import HeadPruningConfig, apply_prune_heads
from slimbert.training.callbacks import Callback
from slimbert.training.config import TrainConfig

from pruning_support import step_context, tiny_bundle

RUN = TrainConfig(learning_rate=3e-3, max_steps=12, batch_size=16, save_every=3, eval_every=6)
SCHEDULE = CubicSchedule(update_every=2)

METHODS = {
    # name: (apply, config, which ctx.train call to interrupt)
    "magnitude": (apply_magnitude, MagnitudeConfig(sparsity=0.7, train=RUN, schedule=SCHEDULE), 1),
    "movement": (apply_movement, MovementConfig(sparsity=0.7, train=RUN, schedule=SCHEDULE), 1),
    "prune-heads": (apply_prune_heads, HeadPruningConfig(fraction=0.5, rounds=2, importance_samples=32, train=RUN), 2),
    "block-movement": (apply_block_movement, BlockMovementConfig(sparsity=0.5, block_rows=8, block_cols=8, train=RUN,
                                                                 schedule=SCHEDULE), 1),
    "layerdrop": (apply_layerdrop, LayerDropConfig(p=0.5, num_drop=1, train=RUN), 1),
}


class _Interrupt(Callback):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step_end(self, state, model):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", list(METHODS))
def test_resume_after_interruption_matches_uninterrupted_run(tiny_model_dirs, tiny_glue, tmp_path, monkeypatch, method):
    apply, config, interrupted_call = METHODS[method]
    resumed_from = []

    def run(work: str, interrupt_at: int):
        ctx = step_context(tiny_glue, tmp_path / work)
        calls = []
        real_train = ctx.train

        def train(bundle, cfg, callbacks=(), **kw):
            calls.append(1)
            at = interrupt_at if len(calls) == interrupted_call else -1
            result = real_train(bundle, cfg, callbacks=[*callbacks, _Interrupt(at)], **kw)
            resumed_from.append(result.resumed_from_step)
            return result

        monkeypatch.setattr(ctx, "train", train)
        return apply(tiny_bundle(tiny_model_dirs["bert"], ctx), config, ctx)

    straight = run("straight", -1)
    with pytest.raises(KeyboardInterrupt):
        run("resumed", 8)
    resumed_from.clear()
    resumed = run("resumed", -1)
    assert 6 in resumed_from  # the interrupted run continued from its step-6 checkpoint
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
