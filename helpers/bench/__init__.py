"""The measuring harness (backstage)."""
