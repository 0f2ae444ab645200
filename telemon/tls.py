"""TLS contexts: the server's, and the client settings every HTTPS input and output shares.

Config models build their context once, when the file is checked (so that
`telemon check` refuses a file that `serve` could not use, and the runtime
never reads the files again); every failure is a one-line reason naming the key.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Self

from pydantic import PrivateAttr, model_validator

from telemon.schema import ConfigPath, Model, check_readable_file

__all__ = [
    "ClientCertTLS",
    "ClientTLS",
    "client_context",
    "describe_tls_error",
    "server_context",
]


def client_context(
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    insecure: bool = False,
) -> ssl.SSLContext | None:
    """A context trusting `ca`, presenting `cert`/`key`, or trusting anything when `insecure`.

    None when nothing is set: the system's defaults apply. A file that cannot
    be used is a one-line ValueError naming its key (`tls_ca`, `tls_cert`, `tls_key`).
    """
    if ca is None and cert is None and not insecure:
        return None
    _check_readable(tls_ca=ca, tls_cert=cert, tls_key=key)
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ValueError(f"tls_ca: cannot use {ca}: {describe_tls_error(exc)}") from None
    if cert is not None and key is not None:
        _load_chain(context, cert, key)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The context serving HTTPS with `cert` and `key` (errors as `client_context`)."""
    _check_readable(tls_cert=cert, tls_key=key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(context, cert, key)
    return context


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        context.load_cert_chain(cert, key, password=_refuse_encrypted_key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ValueError(f"tls_cert, tls_key: cannot use them: {describe_tls_error(exc)}") from None


def _check_readable(**paths: Path | None) -> None:
    for name, path in paths.items():
        if path is not None:
            check_readable_file(name, path)


class ClientTLS(Model):
    """`tls_ca` and `insecure_skip_verify`: how an HTTPS client trusts servers.

    The context is built when the table is validated and kept: `tls_context()`
    hands out that one object, however many connections use it.
    """

    tls_ca: ConfigPath | None = None
    insecure_skip_verify: bool = False

    _tls_context: ssl.SSLContext | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load_tls(self) -> Self:
        cert, key = self._client_certificate()
        self._tls_context = client_context(
            self.tls_ca, cert, key, insecure=self.insecure_skip_verify
        )
        return self

    def _client_certificate(self) -> tuple[Path | None, Path | None]:
        return None, None

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context; None when nothing is set (the system's defaults apply)."""
        return self._tls_context


class ClientCertTLS(ClientTLS):
    """`ClientTLS` plus a client certificate, `tls_cert` and `tls_key`."""

    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None

    def _client_certificate(self) -> tuple[Path | None, Path | None]:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a client certificate needs both tls_cert and tls_key")
        return self.tls_cert, self.tls_key


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
