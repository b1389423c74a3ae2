"""Shared pytest configuration: fixture plugins live in tests/fixtures/, one module per service."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.s3",
    "tests.fixtures.mlflow_server",
    "tests.fixtures.training",
    "tests.fixtures.serving",
]
