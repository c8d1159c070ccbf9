"""Jianzheng verifier: the trust root.

Canonical JSON (``canonical``), evidence leaves and RFC 6962 trees (``merkle``), proofs
(``proof``), bundles (``bundle``), chain reads (``chain``), typed results (``models``),
errors (``errors``) and the ``jianzheng-verify`` command (``cli``). Imports nothing from
``signer`` or ``service``; a third party can re-implement it from INTERFACE.md alone.
"""
