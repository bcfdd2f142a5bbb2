"""The dead-letter queue: runs the platform gave up on, kept in Redis (capped) for operators.

Both consumers write it through `record_give_up` (the legacy queue-worker when it gives a run up,
the Celery worker from its `task_failure` handler); the gateway's admin API lists, inspects,
replays (to the path the run belongs to) and purges it. Layout, under one key prefix:

    {key}           list of entry ids, newest first (LPUSH), trimmed to `max_entries`
    {key}:entries   hash id -> DeadLetter JSON

Every write is one Lua script, so the list and the hash never disagree, even when two workers
push at once and the oldest entries are dropped to keep the cap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from pydantic import ValidationError
from redis.commands.core import Script

from crucible_contracts.errors import CrucibleError, NotFound, Unavailable
from crucible_contracts.models import DeadLetter, EvalTask
from crucible_contracts.names import DEAD_LETTER_KEY
from crucible_runtime.clients import ExecutorPool, StorageClient
from crucible_runtime.lifecycle import end_with_error

DEFAULT_MAX_ENTRIES = 10_000

log = logging.getLogger(__name__)


# KEYS: ids list, entries hash. ARGV: id, json, max_entries. Returns 1, or 0 when the id exists.
_PUSH = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('LPUSH', KEYS[1], ARGV[1])
local cap = tonumber(ARGV[3])
local dropped = redis.call('LRANGE', KEYS[1], cap, -1)
if #dropped > 0 then
  redis.call('LTRIM', KEYS[1], 0, cap - 1)
  for _, id in ipairs(dropped) do
    redis.call('HDEL', KEYS[2], id)
  end
end
return 1
"""

# KEYS: ids list, entries hash. ARGV: first index, last index. Returns the JSON of each entry.
_PAGE = """
local ids = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])
local entries = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[2], id)
  if entry then
    table.insert(entries, entry)
  end
end
return entries
"""

# KEYS: ids list, entries hash. ARGV: id. Returns the removed entry's JSON, or nil.
_REMOVE = """
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then
  return nil
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('LREM', KEYS[1], 1, ARGV[1])
return entry
"""

# KEYS: ids list, entries hash. Returns how many entries were deleted.
_PURGE = """
local count = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return count
"""


class DeadLetterStore:
    """The dead-letter queue in one Redis; thread-safe as the client is.

    Every Redis failure surfaces as Unavailable, an unknown id as NotFound.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: str = DEAD_LETTER_KEY,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if max_entries < 1:
            raise ValueError("a dead-letter queue needs room for at least one entry")
        self.key = key
        self.max_entries = max_entries
        self._client = client
        self._keys = [key, f"{key}:entries"]
        self._push = client.register_script(_PUSH)
        self._page = client.register_script(_PAGE)
        self._remove = client.register_script(_REMOVE)
        self._purge = client.register_script(_PURGE)

    def push(self, entry: DeadLetter) -> bool:
        """Add `entry` as the newest, dropping the oldest beyond the cap.

        Idempotent by `entry.id`: pushing an id that is already there adds nothing and answers
        False, so a failure reported (or forwarded) twice leaves one entry.
        """
        return bool(self._script(self._push, entry.id, entry.model_dump_json(), self.max_entries))

    def list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Up to `limit` entries, newest first, skipping the `offset` newest."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset cannot be negative")
        if limit == 0:
            return []
        found = self._script(self._page, offset, offset + limit - 1)
        return [DeadLetter.model_validate_json(entry) for entry in found]

    def count(self) -> int:
        return int(_guarded(lambda: self._client.llen(self.key)))

    def oldest(self) -> DeadLetter | None:
        """The entry parked first among those kept (None when the queue is empty)."""
        found = self._script(self._page, -1, -1)
        return DeadLetter.model_validate_json(found[0]) if found else None

    def get(self, entry_id: str) -> DeadLetter:
        found = _guarded(lambda: self._client.hget(self._keys[1], entry_id))
        if found is None:
            raise _not_found(entry_id)
        return DeadLetter.model_validate_json(found)

    def remove(self, entry_id: str) -> DeadLetter:
        """Take one entry out (e.g. once it was replayed) and answer it."""
        found = self._script(self._remove, entry_id)
        if found is None:
            raise _not_found(entry_id)
        return DeadLetter.model_validate_json(found)

    def purge(self) -> int:
        """Delete every entry; answers how many there were."""
        return int(self._script(self._purge))

    def _script(self, script: Script, *args: Any) -> Any:
        return _guarded(lambda: script(keys=self._keys, args=list(args)))


def _guarded(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except redis.RedisError as exc:
        raise Unavailable(f"the dead-letter queue cannot be reached: {exc!r}") from exc


def _not_found(entry_id: str) -> NotFound:
    return NotFound(f"no dead-letter entry {entry_id}", id=entry_id)


# --- what a given-up run leaves behind, on either path --------------------------------------------


def run_of(kwargs: dict[str, Any]) -> EvalTask | None:
    """The run a task's arguments name, or None when they are malformed.

    A malformed task's run is never ended: arguments that do not validate cannot be trusted to
    name the right evaluation. Its dead-letter entry still shows what they said.
    """
    try:
        return EvalTask.model_validate(kwargs.get("task"))
    except ValidationError:
        return None


def record_give_up(
    entry: DeadLetter,
    *,
    dead_letters: DeadLetterStore,
    storage: StorageClient,
    executors: ExecutorPool,
    stop_program: bool,
) -> None:
    """Stop the program (when it may still run), park `entry`, and end its run `error`.

    The entry goes in before the run ends, so whoever sees the run `error` finds the entry. A
    DLQ that cannot be reached does not keep the run from ending: its status and reason remain.
    """
    task = run_of(entry.kwargs)
    if task is not None and stop_program:
        executors.kill(task.eval_id, task.role)
    try:
        dead_letters.push(entry)
    except Unavailable as exc:
        log.error("could not park eval %s in the dead-letter queue: %s", entry.eval_id, exc)
    if task is None:
        log.error("malformed task %s dead-lettered: %s", entry.task_id, entry.reason)
        return
    log.warning("eval %s %s ends error: %s", task.eval_id, task.role, entry.reason)
    try:
        end_with_error(task, entry.reason, storage=storage, attempts=entry.attempts)
    except CrucibleError as exc:
        log.error("could not record the error of eval %s: %s", task.eval_id, exc)
