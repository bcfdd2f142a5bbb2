"""Crucible's shared contracts: what every service agrees on, and nothing service-specific."""
