"""Loopline serving."""
