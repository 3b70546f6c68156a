"""A tqdm progress bar on stderr, so that stdout stays machine-readable."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm

# No monitor thread: `evaluate` forks its fit, embedding and run workers after the first bar is made, and a
# thread alive at a fork (tqdm's wakes every 10 s and takes tqdm's lock) can leave a lock held in the child.
# The monitor only corrects a bar's refresh rate after a long lag (tqdm's `maxinterval`), which these bars'
# dynamic `miniters` do without it.
tqdm.monitor_interval = 0


class Bars:
    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: list[tqdm] = []

    def __call__(self, label: str, total: int) -> Callable[[int], None]:
        bar = tqdm(
            total=total,
            desc=label,
            unit="",
            file=sys.stderr,
            leave=True,
            dynamic_ncols=True,
            disable=not self.enabled,
            mininterval=0.5 if sys.stderr.isatty() else 5.0,
        )
        self._bars.append(bar)

        def tick(n: int) -> None:
            bar.update(n)
            if bar.n >= bar.total:
                bar.close()

        return tick

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
