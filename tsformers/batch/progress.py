"""The progress of a forecast over series, for the ``tsformers`` command."""
from __future__ import annotations

import time


class Progress:
    """Progress of a forecast over series: a bar redrawn in place on a terminal, plain log lines otherwise."""

    def __init__(self, command: str, stream, min_interval: float = 1.0):
        self.command, self.stream, self.min_interval = command, stream, min_interval
        self.tty = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        self.total = self.done = 0
        self.started = self.last = 0.0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started = self.last = time.perf_counter()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.stream is None or (now - self.last < self.min_interval and self.done < self.total):
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        share = self.done / max(self.total, 1)
        if self.tty:
            bar = "#" * int(30 * share)
            self.stream.write(f"\r[{bar:<30}] {self.done}/{self.total} series, {rate:,.0f}/s")
        else:
            self.stream.write(f"tsformers {self.command}: {self.done}/{self.total} series ({share:.0%}), "
                              f"{rate:,.0f} series/s\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
