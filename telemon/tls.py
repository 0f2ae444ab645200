"""Client TLS settings, the same for every input and output that speaks HTTPS."""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context"]


def client_context(
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    insecure: bool = False,
) -> ssl.SSLContext | None:
    """A context trusting `ca`, presenting `cert`/`key`, or trusting anything when `insecure`.

    None when nothing is set: the system's defaults apply. Raises `ssl.SSLError`
    or `OSError` for files that cannot be used (config models turn that into
    an error naming the key).
    """
    if ca is None and cert is None and not insecure:
        return None
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
