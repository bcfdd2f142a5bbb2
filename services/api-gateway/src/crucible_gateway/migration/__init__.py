"""Migration control: the shared settings document, shadow comparisons, the guard, ramp and report."""
