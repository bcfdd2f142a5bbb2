"""crucible_bench: make bench, the whole suite under real HTTP load."""
