"""Report sealing: QR code + seal stamp on every page, PAdES signature, RFC 3161 time-stamps.

Public modules: :mod:`signer.seal` (``seal_pdf``), :mod:`signer.stamp` (``prepare_seal``,
``StampLayout``), :mod:`signer.keys` (key sources: PKCS#12, PKCS#11), :mod:`signer.tsa`
(time-stamp authority and clients), :mod:`signer.ca` (development CA),
:mod:`signer.errors`. Import what you need from those modules; this package imports
nothing eagerly so that ``import signer`` stays cheap.
"""
