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


#: The longest test files (seconds serially, measured 2026-12), started first so that a
#: parallel run (`make test`: xdist, whole files per worker) does not end on one of them.
LONG_FIRST = (
    "test_kill_chaos.py", "test_e2e_story.py", "test_anchoring_serve.py", "test_browser.py",
    "test_hostile_flood.py",
)


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
