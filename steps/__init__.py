"""Loopline steps."""
