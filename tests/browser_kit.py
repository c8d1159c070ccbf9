"""Helpers for the Chromium tests: Debian's Chromium, its flags, the phone viewport."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: The phone people open public pages on.
VIEWPORT = {"width": 375, "height": 812}
