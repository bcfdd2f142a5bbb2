"""One SSE message of the live events, and its bytes (framed by sse-starlette, once per message:
an entry handed to a thousand listeners is encoded once, not a thousand times)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sse_starlette import ServerSentEvent

# The line separator of the stream: "\n", the most common form for readers that split by hand.
SEPARATOR = "\n"


@dataclass(frozen=True)
class Message:
    """One SSE message: `id`, `event`, `data` (one line of JSON)."""

    id: str
    event: str
    data: str

    @cached_property
    def wire(self) -> bytes:
        return ServerSentEvent(self.data, event=self.event, id=self.id, sep=SEPARATOR).encode()
