"""Pipes to and from a sandboxed program, non-blocking on the event loop and bounded while read."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

CHUNK = 256 * 1024
TAIL_BYTES = 4096


@dataclass
class Captured:
    """A stream read to its end: the first `cap` bytes, how many there were, and the last few."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    total: int = 0
    tail: bytes = b""

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.total += len(chunk)
        self.tail = (self.tail + chunk)[-TAIL_BYTES:]


async def consume_output(fd: int, captured: Captured) -> None:
    """Read `fd` to EOF into `captured`, keeping at most its cap; the rest is read and dropped."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    os.set_blocking(fd, False)
    loop.add_reader(fd, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                return
            captured.add(chunk)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def feed_input(fd: int, data: bytes) -> None:
    """Write `data` to the program's stdin, then close it; a program that stops reading is fine."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                writable = asyncio.Event()
                loop.add_writer(fd, writable.set)
                try:
                    await writable.wait()
                finally:
                    loop.remove_writer(fd)
            except BrokenPipeError:
                return
    finally:
        os.close(fd)
