"""Peer servers of the benchmark; each file runs as a program in its own virtualenv."""
