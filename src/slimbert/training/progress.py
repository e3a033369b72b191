"""A rich progress bar for training: step, loss, loss terms, best eval metric, time left.

Where stderr is not a terminal (a log file, CI, ``nohup``) a bar draws nothing until the end, so
a plain status line is printed instead every ``LOG_EVERY_S`` seconds and at the last step.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
if not console.is_terminal:  # logs, CI, pipes: plain lines, never wrapped
    console = Console(stderr=True, width=100_000, soft_wrap=True, no_color=True, highlight=False)
LOG_EVERY_S = 60.0


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
        self.description = description
        self.total_steps = total_steps
        self.plain_lines = enabled and not console.is_terminal
        self.started = self.last_line = time.monotonic()
        self.first_step: int | None = None  # where this process started (a resumed run does not start at 0)

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
        if self.first_step is None:
            self.first_step = step
        now = time.monotonic()
        if self.plain_lines and step > self.first_step and (now - self.last_line >= LOG_EVERY_S or step >= self.total_steps):
            self.last_line = now
            elapsed = now - self.started
            left = elapsed / (step - self.first_step) * (self.total_steps - step)
            self.note(f"{self.description}: step {step}/{self.total_steps} ({elapsed / 60:.1f} min, ~{left / 60:.1f} min "
                      f"left) " + " | ".join(status))

    def note(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(message)}", highlight=False)
