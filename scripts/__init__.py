"""Operator and developer entry points, thin over steps/."""
