"""crucible_chaos: faults injected into the whole suite under load (`make chaos`)."""
