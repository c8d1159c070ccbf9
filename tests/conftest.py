"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per component."""

import os

# The suite runs on shared 2-core machines where checking a legitimate PDF in the verify
# sandbox can take longer than the production default (4 s); tests of the limits themselves
# (tests/test_public_hostile.py, tests/test_hostile_flood.py) set their own.
os.environ.setdefault("JZ_PUBLIC__VERIFY_TIMEOUT_S", "30")

pytest_plugins = [
    "tests.fixtures.chain",
    "tests.fixtures.db",
    "tests.fixtures.signer",
    "tests.fixtures.statuses",
    "tests.fixtures.browser",
]
