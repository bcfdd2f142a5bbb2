"""Crucible Celery worker: tasks.evaluate_code and its queues, retries and dead-letter queue."""
