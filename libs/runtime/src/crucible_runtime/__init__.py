"""crucible_runtime: what services opt into to run: internal clients, the consumer procedure, dead letters, FastAPI glue, logs, test fixtures."""
