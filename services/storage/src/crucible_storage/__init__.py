"""Crucible storage: the database of evaluations, runs, events and comparisons, and its only writer."""
