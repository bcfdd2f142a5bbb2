"""The public evaluations API: submit, read, list and cancel evaluations."""
