"""The one training loop and its extension points (loss terms, callbacks)."""

from slimbert.training.callbacks import Callback
from slimbert.training.config import TrainConfig
from slimbert.training.evaluate import evaluate, predict
from slimbert.training.loop import TrainResult, train
from slimbert.training.losses import LossTerm, TaskLoss
from slimbert.training.state import TrainState

__all__ = ["Callback", "LossTerm", "TaskLoss", "TrainConfig", "TrainResult", "TrainState", "evaluate", "predict", "train"]
