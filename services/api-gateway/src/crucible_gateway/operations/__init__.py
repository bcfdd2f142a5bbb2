"""Operations: queue depths, gateway status, Celery workers and tasks, the dead-letter queue."""
