"""A tqdm progress bar on stderr, so that stdout stays machine-readable."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm


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
