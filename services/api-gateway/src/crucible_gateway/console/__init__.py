"""The operator console: static pages at /console and the few aggregates they read."""
