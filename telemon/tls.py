"""TLS contexts: the server's, and the client settings every HTTPS input and output shares."""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context", "describe_tls_error", "server_context"]


def client_context(
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    insecure: bool = False,
) -> ssl.SSLContext | None:
    """A context trusting `ca`, presenting `cert`/`key`, or trusting anything when `insecure`.

    None when nothing is set: the system's defaults apply. Raises `ssl.SSLError`,
    `OSError` or `ValueError` for files that cannot be used (config models turn
    that into an error naming the key, with `describe_tls_error`).
    """
    if ca is None and cert is None and not insecure:
        return None
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key, password=_refuse_encrypted_key)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The context serving HTTPS with `cert` and `key` (errors as `client_context`)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key, password=_refuse_encrypted_key)
    return context


def describe_tls_error(exc: Exception) -> str:
    """A one-line reason for a certificate or key that OpenSSL refused."""
    text = str(exc)
    for marker, reason in _OPENSSL_REASONS.items():
        if marker in text:
            return reason
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return text


# OpenSSL's words for the usual mistakes, and what they mean to a user.
_OPENSSL_REASONS = {
    "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
    "PEM lib": "not a PEM certificate and key",
    "NO_CERTIFICATE_OR_CRL_FOUND": "no PEM certificate in the file",
}


def _refuse_encrypted_key() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal, which hangs a service.
    raise ValueError("the key is encrypted with a passphrase; give an unencrypted key")
