"""Tests of steps/platform/."""
