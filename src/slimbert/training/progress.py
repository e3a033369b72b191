"""A rich progress bar for training: step, loss, loss terms, best eval metric, time left."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class TrainingProgress:
    def __init__(self, description: str, total_steps: int, enabled: bool = True):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(description, total=total_steps, status="")

    def __enter__(self) -> "TrainingProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def advance_to(self, step: int, loss: float | None, best: float | None, metric: str | None,
                   parts: dict[str, float] | None = None) -> None:
        status = []
        if loss is not None:
            status.append(f"loss {loss:.4f}")
        if parts and len(parts) > 1:
            status.append(" ".join(f"{k} {v:.3f}" for k, v in parts.items()))
        if best is not None and metric:
            status.append(f"best {metric} {best:.4f}")
        self.progress.update(self.task, completed=step, status=" | ".join(status))

    def note(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)
