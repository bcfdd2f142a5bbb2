"""Crucible api-gateway: the public API, routing between legacy and Celery, migration control."""
