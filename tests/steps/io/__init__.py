"""Tests of steps/io/."""
