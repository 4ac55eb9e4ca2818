"""A rich progress bar over forward passes with steps/s and the best value so far (stderr)."""

from __future__ import annotations

import time


class StepProgress:
    def __init__(self, enabled: bool, total: int, done: int):
        self.enabled, self.total, self.done = enabled, total, done

    def __enter__(self):
        if not self.enabled:
            return lambda n, label, best: None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("stress {task.fields[label]}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} passes"),
            TextColumn("{task.fields[rate]} steps/s"),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.p.__enter__()
        task = self.p.add_task("s", total=self.total, completed=self.done, label="", rate="-", best="-")
        start, steps = time.time(), [0]

        def advance(n: int, label: str, best: float) -> None:
            steps[0] += 1
            rate = steps[0] / max(time.time() - start, 1e-9)
            self.p.update(task, advance=n, label=label, rate=f"{rate:.2f}", best=f"{best:,.4g}")

        return advance

    def __exit__(self, *exc):
        if self.enabled:
            self.p.__exit__(*exc)
