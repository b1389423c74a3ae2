"""Tests of steps/core/."""
