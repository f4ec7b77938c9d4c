"""Progress reporting that the library can call and the CLI can draw.

Library code takes a ``progress: Reporter | None`` argument and wraps its long loops in
``reporter.track(...)``. The default reporter draws nothing; the CLI passes a rich one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Reporter:
    """Draws nothing; subclasses draw progress bars."""

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        yield from items


NULL = Reporter()


def reporter_or_null(progress: Reporter | None) -> Reporter:
    return progress if progress is not None else NULL
