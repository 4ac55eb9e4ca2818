"""A rich progress bar over tokens with tokens/s and ETA (stderr); a no-op when disabled."""

from __future__ import annotations

import time


class TokenProgress:
    def __init__(self, enabled: bool, total: int, done: int, label: str = "measuring"):
        self.enabled, self.total, self.done, self.label = enabled, total, done, label

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn(self.label.replace("[", "\\[")),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} tokens"),
            TextColumn("{task.fields[rate]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.p.__enter__()
        task = self.p.add_task("m", total=self.total, completed=self.done, rate="-")
        start, base = time.time(), self.done

        def advance(n: int) -> None:
            self.p.advance(task, n)
            done = self.p.tasks[0].completed - base
            self.p.update(task, rate=f"{done / max(time.time() - start, 1e-9):,.0f}")

        return advance

    def __exit__(self, *exc):
        if self.enabled:
            self.p.__exit__(*exc)
