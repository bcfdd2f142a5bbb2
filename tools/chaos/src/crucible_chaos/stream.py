"""The stream of evaluations kept going through a fault: each program's right result is known.

Every program prints a token of its own (a fresh uuid) after a short sleep, so that some are
mid-run when the fault hits and a result cannot be mistaken for another evaluation's; one in
`fail_every` exits 3 after printing, so that a program's own failure is checked to stay `failed`.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from crucible_contracts.status import Status


@dataclass(frozen=True)
class Expected:
    """What every run of an evaluation must end with."""

    status: str
    output: str
    exit_code: int


@dataclass
class Submitted:
    """One evaluation the gateway accepted (202), and what became of it as last read."""

    eval_id: str
    expected: Expected
    accepted_at: float  # time.time()
    backend: str
    view: dict[str, Any] | None = None

    @property
    def runs(self) -> list[dict[str, Any]]:
        return (self.view or {}).get("runs") or []

    @property
    def ended(self) -> bool:
        """Every run of it (primary and shadow) is terminal."""
        return bool(self.runs) and all(Status(run["status"]).is_terminal() for run in self.runs)

    @property
    def ended_at(self) -> float | None:
        """When its last run ended (storage's clock, the same host's), or None."""
        if not self.ended:
            return None
        stamps = [run.get("completed_at") for run in self.runs]
        if not all(stamps):
            return None
        return max(datetime.fromisoformat(stamp).timestamp() for stamp in stamps)


def program(*, sleep: float, fails: bool) -> tuple[str, Expected]:
    """A program printing a fresh token after `sleep` seconds, and the result it must have."""
    token = uuid.uuid4().hex
    code = f"import time\ntime.sleep({sleep:.2f})\nprint({token!r}, flush=True)"
    if fails:
        return code + "\nraise SystemExit(3)", Expected("failed", token + "\n", 3)
    return code, Expected("completed", token + "\n", 0)


@dataclass
class Stream:
    """Submits one program every 1/`rate` seconds to the gateway at `url` until `stop()`."""

    url: str
    rate: float = 2.0
    sleep: tuple[float, float] = (0.5, 2.0)
    timeout: float = 5.0
    fail_every: int = 5
    submitted: list[Submitted] = field(default_factory=list)
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._loop, name="chaos-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                began = time.monotonic()
                self._submit(http, fails=n % self.fail_every == 0)
                self._stop.wait(max(0.0, 1 / self.rate - (time.monotonic() - began)))

    def _submit(self, http: httpx.Client, *, fails: bool) -> None:
        # A spread of run times, not a secret.
        code, expected = program(sleep=random.uniform(*self.sleep), fails=fails)  # noqa: S311
        try:
            response = http.post("/api/eval", json={"code": code, "timeout": self.timeout})
        except httpx.HTTPError:
            self.refused += 1
            return
        if response.status_code != 202:
            # Not accepted: the client was told so (503 while storage is down), nothing to lose.
            self.refused += 1
            return
        body = response.json()
        self.submitted.append(Submitted(body["eval_id"], expected, time.time(), body["backend"]))


def follow(url: str, submitted: list[Submitted], *, until: float, interval: float = 0.5) -> None:
    """Read each evaluation back until every one has ended or time.time() passes `until`."""
    with httpx.Client(base_url=url, timeout=10) as http:
        while True:
            for item in submitted:
                if not item.ended:
                    try:
                        response = http.get(f"/api/eval/{item.eval_id}")
                    except httpx.HTTPError:
                        continue  # the gateway's storage may be down: not yet
                    if response.status_code == 200:
                        item.view = response.json()
            if all(item.ended for item in submitted) or time.time() > until:
                return
            time.sleep(interval)
