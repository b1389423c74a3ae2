"""Tests of steps/monitor/."""
