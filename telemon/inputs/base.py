"""What every input shares: its config base and the `Target` it builds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from pydantic import Field

from telemon import bounded
from telemon.metric import Metric
from telemon.schema import Duration, Model, Tags

__all__ = [
    "Discovered",
    "InputConfig",
    "InputContext",
    "InputError",
    "Target",
    "read_bounded",
]


class InputError(Exception):
    """An expected collection failure; its message is the one-line reason."""


class InputConfig(Model):
    """Keys every `[[inputs.NAME]]` table accepts."""

    interval: Duration | None = None
    timeout: Duration | None = None
    tags: Tags = Field(default_factory=dict)

    def build(self, context: InputContext) -> list[Target]:
        """The targets this table describes."""
        raise NotImplementedError

    def field_types(self) -> dict[str, dict[str, str]]:
        """The declared kind of the fields this table writes: {measurement: {field: kind}}.

        Kinds are line protocol's: "i" integer, "u" unsigned, "f" float, "b"
        boolean, "s" string. A declared kind wins over the first value's kind,
        so only fields whose type never varies are declared (none by default).
        """
        return {}


class InputContext:
    """What inputs get from the agent when they are built (no I/O here)."""

    def __init__(self, field_timeout: float = 1.0) -> None:
        self.field_timeout = field_timeout
        self._session: aiohttp.ClientSession | None = None
        # Set by the collector: an input that finds targets at run time (Pharo
        # containers by label) hands the full current set to it at each poll.
        self.discovery: Callable[[Target, str, Sequence[Discovered]], None] | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """One HTTP client session shared by all inputs, opened on first use."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=True)
        return self._session

    async def aclose(self) -> None:
        """Close the shared session, if one was opened."""
        if self._session is not None:
            await self._session.close()


class Target(ABC):
    """One thing an input collects from (a URL, a process, the Python VM).

    Polled targets are collected by the scheduler at their interval; `lazy`
    targets are collected at every scrape, like Telemon's field blocks.
    """

    lazy: bool = False
    # Class defaults: subclasses that never note a partial error need no __init__ call.
    _partial_errors: int = 0
    _last_partial_error: str | None = None
    _lost: tuple[tuple[str, str], ...] = ()

    def __init__(self, target: str) -> None:
        self.target = target

    @property
    def partial_errors(self) -> int:
        """Cumulative failures inside collections that still succeeded."""
        return self._partial_errors

    @property
    def last_partial_error(self) -> str | None:
        """The reason for the latest of `partial_errors`."""
        return self._last_partial_error

    def note_partial_error(self, reason: str) -> None:
        """Count a failure that cost part of a collection (one container, one process)."""
        self._partial_errors += 1
        self._last_partial_error = reason

    def note_lost(self, measurement: str, reason: str) -> None:
        """A value the upstream gave that this collection left out (a parser's note):
        the collector logs it once and counts it in the target's `values_dropped`."""
        self._lost = (*self._lost, (measurement, reason))

    def take_lost(self) -> tuple[tuple[str, str], ...]:
        """The values noted lost since the last call."""
        lost, self._lost = self._lost, ()
        return lost

    @abstractmethod
    async def collect(self, now_ns: int) -> list[Metric]:
        """One collection; raises `InputError` (or TimeoutError) on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the target holds (connections, files)."""


@dataclass(frozen=True, slots=True)
class Discovered:
    """A target an input found at run time, polled like a configured one until it is gone."""

    key: str
    """Stable identity: the same key in the next poll means the same target."""
    target: Target
    tags: dict[str, str] = field(default_factory=dict)


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or InputError once more than `limit` bytes arrived."""

    def too_large() -> InputError:
        return InputError(f"response body larger than max_body_size ({limit} bytes); cut off")

    return await bounded.read_bounded(response.content, limit, too_large)
