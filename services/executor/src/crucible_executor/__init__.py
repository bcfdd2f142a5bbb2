"""Crucible executor: runs one untrusted program in a sandbox and returns its result."""
