"""Loopline pipelines."""
