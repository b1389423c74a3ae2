"""Tests of steps/ml/."""
