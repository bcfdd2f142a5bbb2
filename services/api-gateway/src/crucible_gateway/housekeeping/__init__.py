"""Housekeeping, run by the leader replica: runs stuck in queued or running, old evaluations."""
