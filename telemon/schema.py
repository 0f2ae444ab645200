"""Types and checks shared by every config model (durations, tags, names, URLs, secrets)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, SecretStr

__all__ = [
    "ConfigPath",
    "Duration",
    "FieldName",
    "MeasurementName",
    "Model",
    "TagKey",
    "Tags",
    "TomlTuple",
    "WebURL",
    "check_readable_file",
    "check_url_port",
    "check_web_url",
    "CREDENTIAL_NAME",
    "display_url",
    "parse_duration",
    "raise_problems",
    "read_secret",
    "secret_or_file",
    "url_has_credentials",
]


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, objects are immutable.

    Strict: a boolean must be a TOML boolean and an integer a TOML integer
    (`gzip = "yes"` or `gzip = 1` is a mistake to report, not to guess at);
    a float accepts an integer. Types that TOML cannot write (paths, tuples)
    are converted by their own validators (`ConfigPath`, `Field(strict=False)`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def raise_problems(problems: list[str]) -> None:
    """ValueError holding every problem, one per line, if any.

    A model validator checks everything it can and reports it all at once:
    `parse_config` turns each line into one error at the model's key path.
    """
    if problems:
        raise ValueError("\n".join(problems))


def _path(value: Any) -> Any:
    if isinstance(value, str):
        return Path(value)
    if isinstance(value, Path):
        return value
    raise ValueError("expected a path (a string)")


ConfigPath = Annotated[Path, BeforeValidator(_path)]
"""A file or directory path, written as a TOML string."""


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


_T = TypeVar("_T")
TomlTuple = Annotated[tuple[_T, ...], BeforeValidator(_tuple)]
"""`TomlTuple[T]`: a tuple of T written as a TOML array (strict mode wants a tuple)."""


def read_secret(path: Path, key: str) -> SecretStr:
    """A password or token from a file (Docker/Kubernetes secrets), stripped; never empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{key}: {path} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"{key}: {path} is empty")
    return SecretStr(text)


def secret_or_file(key: str, value: SecretStr | None, path: Path | None) -> SecretStr | None:
    """`key` or `key_file`, not both: the value, else the file's content (read now, once).

    Config models call it in their validator and keep the result, so that
    `telemon check` refuses an unreadable file and the runtime never reads it again.
    """
    if value is not None and path is not None:
        raise ValueError(f"set {key} or {key}_file, not both")
    if path is None:
        return value
    return read_secret(path, f"{key}_file")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from a Telegraf duration ("500ms", "1m30s") or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration like "10s"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(f'invalid duration {value!r}: use units ns, us, ms, s, m, h ("10s")')
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise ValueError('expected a duration like "10s"')
    if not seconds > 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    if not seconds < 10 * 365 * 86400:
        raise ValueError(f"duration too long, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A positive number of seconds, written as in Telegraf (`"10s"`)."""

_RESERVED_TAG_KEYS = {"time", "_field", "_measurement"}


def _check_tag_key(key: str) -> str:
    if not key:
        raise ValueError("tag keys must not be empty")
    if key in _RESERVED_TAG_KEYS:
        raise ValueError(f"tag key {key!r} is reserved by InfluxDB")
    if re.search(r"[\x00-\x1f\x7f]", key) or key.endswith("\\"):
        raise ValueError(f"tag key {key!r} holds a control character or a trailing backslash")
    return key


TagKey = Annotated[str, AfterValidator(_check_tag_key)]
Tags = dict[TagKey, str]


def _check_name(name: str) -> str:
    if not name.strip():
        raise ValueError("must not be empty")
    if re.search(r"[\x00-\x1f\x7f]", name):
        raise ValueError(f"{name!r} holds a control character")
    return name


MeasurementName = Annotated[str, AfterValidator(_check_name)]
FieldName = Annotated[str, AfterValidator(_check_name)]


def check_readable_file(name: str, path: Path) -> None:
    """ValueError naming config key `name` unless `path` is a file (one line, never OSError)."""
    try:
        is_file = path.is_file()
    except OSError as exc:  # EACCES on a parent directory, ENAMETOOLONG, ...
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror}") from None
    if not is_file or not os.access(path, os.R_OK):
        raise ValueError(f"{name}: cannot read {path}")


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # "http://[::1": an unclosed IPv6 address
        return None


def check_url_port(url: str) -> str:
    """`url` unchanged, or ValueError when its port is given but not 1..65535.

    Caught here, a bad port is a config error naming the key; else the first
    request fails at start-up.
    """
    parts = _split(url)
    try:
        port = parts.port if parts is not None else None
    except ValueError:  # out of range, or not a number
        port = 0
    if port == 0:
        raise ValueError(f"{display_url(url)!r}: the port is not a number from 1 to 65535")
    return url


def check_web_url(url: str) -> str:
    """`url` unchanged if it is http:// or https:// with a host (and a valid port if given)."""
    parts = _split(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{display_url(url)!r} is not an http:// or https:// URL")
    return check_url_port(url)


WebURL = Annotated[str, AfterValidator(check_web_url)]
"""An http:// or https:// URL with a host; user:password in it is kept (and never shown)."""


def url_has_credentials(url: str) -> bool:
    """Whether the URL carries user or password, as aiohttp (yarl) reads it.

    "http://@host/" carries none. aiohttp refuses a request with these and
    another source of the Authorization header, so config models check it.
    """
    parts = _split(url)
    return parts is not None and (bool(parts.username) or parts.password is not None)


CREDENTIAL_NAME = re.compile(r"token|secret|pass|pwd|auth|key|sig|session|credential|jwt", re.I)
"""Query parameters named like credentials: never shown in a tag or a log line."""


def display_url(url: str) -> str:
    """The URL without user:password, and with the values of query parameters
    named like credentials (`?token=...`) masked, for logs and tags."""
    # By hand rather than urlsplit, which raises on some malformed URLs and
    # normalizes others: this must show any string, changed only where it must.
    scheme, sep, rest = url.partition("://")
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    if sep and "@" in rest[:end]:
        rest = rest[:end].rpartition("@")[2] + rest[end:]
    return f"{scheme}{sep}{_masked_query(rest)}" if sep else url


def _masked_query(rest: str) -> str:
    head, mark, query = rest.partition("?")
    if not mark:
        return rest
    query, hash_mark, fragment = query.partition("#")
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}=***" if equals and CREDENTIAL_NAME.search(name) else part)
    return f"{head}?{'&'.join(parts)}{hash_mark}{fragment}"
