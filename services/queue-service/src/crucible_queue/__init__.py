"""Crucible legacy queue: the in-memory deque queue-service and its polling queue-worker."""
