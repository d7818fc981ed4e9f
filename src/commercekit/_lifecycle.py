"""``async with`` for the long-running parts (buses, relays): start on enter, stop on exit."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class AsyncLifecycle(abc.ABC):
    """A base for anything with ``async start()`` and ``async stop()``."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start working."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop working, cleanly."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
