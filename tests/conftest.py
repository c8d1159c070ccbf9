"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per component."""

pytest_plugins = [
    "tests.fixtures.chain",
    "tests.fixtures.db",
    "tests.fixtures.signer",
    "tests.fixtures.statuses",
]
