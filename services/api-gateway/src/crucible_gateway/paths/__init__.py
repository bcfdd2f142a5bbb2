"""The two paths an evaluation can take (legacy queue-service, Celery broker) and the choice between them."""
