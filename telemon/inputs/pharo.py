"""`[[inputs.pharo]]`: poll Pharo images' statistics endpoints.

Each URL is one target, polled at the input's interval. The body is read up
to `max_body_size`, parsed by `pharo_formats` (every format a Pharo image
serves its VM figures in) and written as the `pharo` measurement with an
`instance` tag naming the target: the name `instances` gives the URL, else
host:port, or host:port/path when another unnamed URL of the same table has
that host:port (several images behind one server), or host:port/path?query
when another has that host:port/path too (see `_default_instances`). Two URLs
of a table that would still share an instance are a config error.
"""

from __future__ import annotations

import ssl
import time
from collections import Counter
from typing import Literal
from urllib.parse import unquote_plus, urlsplit

import aiohttp
from pydantic import Field, PrivateAttr, SecretStr, model_validator

from telemon.inputs.base import InputConfig, InputContext, InputError, Target, read_bounded
from telemon.inputs.pharo_figures import figure_kinds, figures_markdown
from telemon.inputs.pharo_formats import (
    CLASSIC_PARAMETERS,
    REPORT_FIELDS,
    SPUR_PARAMETERS,
    FormatError,
    Sample,
    as_figures,
    parse_auto,
    parse_payload,
)
from telemon.metric import FieldValue, Metric
from telemon.schema import (
    CREDENTIAL_NAME,
    ConfigPath,
    MeasurementName,
    WebURL,
    display_url,
    secret_or_file,
    url_has_credentials,
)
from telemon.tls import ClientTLS

__all__ = [
    "COUNTER_FIELDS",
    "MEASUREMENT_COUNTERS",
    "REFERENCE",
    "SAMPLE_CONFIG",
    "TELEMON_FIELD_TYPES",
    "PharoConfig",
    "PharoTarget",
    "samples_to_metrics",
]

_SMALLTALK_EPOCH_OFFSET_US = 2_177_452_800 * 1_000_000
PharoFormat = Literal["auto", "influx", "json", "labels", "parameters", "report"]
# The VM's clock and telemon's are read at slightly different moments (and may
# be different hosts' clocks): a start time this little in the future is a
# restart just now, not a bogus value.
_CLOCK_SKEW_MS = 60_000
REPORT_NAMES = frozenset(name for names in REPORT_FIELDS.values() for name in names)
"""The figures a statisticsReport gives."""

TELEMON_FIELD_TYPES: dict[str, str] = figure_kinds()
"""The kind of every figure of `pharo_figures.FIGURES` (Telemon's ten and the rest):
integers (times in ms, sizes in bytes, counts) but for a few ratios."""


class PharoConfig(InputConfig, ClientTLS):
    """Which images to poll and how to reach them."""

    urls: list[WebURL] = Field(min_length=1)
    format: PharoFormat = "auto"
    measurement: MeasurementName = "pharo"
    instances: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    token_file: ConfigPath | None = None
    max_body_size: int = Field(default=1024 * 1024, gt=0)

    _token: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> PharoConfig:
        unknown = sorted(set(self.instances) - set(self.urls))
        if unknown:
            raise ValueError(f"instances: {unknown[0]!r} is not one of urls")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        # Read now, so `telemon check` refuses an empty or unreadable file.
        self._token = secret_or_file("token", self.token, self.token_file)
        self._one_authorization()
        if clash := _instance_clash(self.urls, _default_instances(self.urls, self.instances)):
            raise ValueError(clash)
        return self

    def _one_authorization(self) -> None:
        # aiohttp refuses, at every request, a second source of the Authorization header
        # (and a token would silently replace headers.Authorization).
        sources = []
        if self.username is not None:
            sources.append("username/password")
        if self.token is not None:
            sources.append("token")
        if self.token_file is not None:
            sources.append("token_file")
        sources += [f"headers.{key}" for key in self.headers if key.lower() == "authorization"]
        with_credentials = [i for i, url in enumerate(self.urls) if url_has_credentials(url)]
        if with_credentials:
            sources.append(f"user:password in urls.{with_credentials[0]}")
        if len(sources) > 1:
            raise ValueError(
                f"{sources[0]} and {sources[1]} both set the Authorization header; keep one"
            )

    @property
    def bearer_token(self) -> str | None:
        """The token, from `token` or `token_file`."""
        return self._token.get_secret_value() if self._token else None

    def build(self, context: InputContext) -> list[Target]:
        """One target per URL, sharing the request settings."""
        request = _RequestSettings(self)
        instances = _default_instances(self.urls, self.instances)
        return [PharoTarget(url, self, request, context, instances[url]) for url in self.urls]

    def field_types(self) -> dict[str, dict[str, str]]:
        """Every figure of `pharo_figures.FIGURES`; the payload's other values are not declared."""
        return {self.measurement: dict(TELEMON_FIELD_TYPES)}


class _RequestSettings:
    """Headers, auth and TLS for every request of one `[[inputs.pharo]]` table."""

    def __init__(self, config: PharoConfig) -> None:
        self.headers = dict(config.headers)
        if config.bearer_token:
            self.headers["Authorization"] = f"Bearer {config.bearer_token}"
        self.auth = (
            aiohttp.BasicAuth(config.username, config.password.get_secret_value())
            if config.username is not None and config.password is not None
            else None
        )
        context = config.tls_context()  # built once, when the config was checked
        self.ssl: ssl.SSLContext | bool = context if context is not None else True


class PharoTarget(Target):
    """One Pharo image's statistics URL."""

    def __init__(
        self,
        url: str,
        config: PharoConfig,
        request: _RequestSettings,
        context: InputContext,
        instance: str,
    ) -> None:
        super().__init__(display_url(url))
        self.url = url
        self.config = config
        self.request = request
        self.context = context
        self.instance = instance  # from `_default_instances`
        self.format_used: str | None = None

    async def collect(self, now_ns: int) -> list[Metric]:
        """GET the URL, parse the body, answer the `pharo` lines."""
        content_type, text = await self._fetch()
        # `now_ns` was taken before the request; a VM restarted meanwhile started after it.
        answered_ns = time.time_ns()
        problems: list[str] = []
        try:
            if self.config.format == "auto":
                self.format_used, samples = parse_auto(content_type, text, problems=problems)
            else:
                samples = parse_payload(self.config.format, text, problems=problems)
                self.format_used = self.config.format
        except FormatError as exc:
            raise InputError(str(exc)) from None
        for problem in problems:
            self.note_lost(self.config.measurement, f"left out of the payload: {problem}")
        return samples_to_metrics(
            samples, self.config.measurement, self.instance, now_ns, clock_ns=answered_ns
        )

    async def _fetch(self) -> tuple[str, str]:
        try:
            async with self.context.session.get(
                self.url,
                headers=self.request.headers,
                auth=self.request.auth,
                ssl=self.request.ssl,
                allow_redirects=True,
            ) as response:
                if not 200 <= response.status < 300:
                    raise InputError(f"HTTP {response.status} {response.reason or ''}".strip())
                body = await read_bounded(response, self.config.max_body_size)
                return response.content_type, body.decode("utf-8", "replace")
        except aiohttp.ClientError as exc:
            raise InputError(_client_error(exc)) from None


def samples_to_metrics(
    samples: list[Sample],
    measurement: str,
    instance: str,
    now_ns: int,
    *,
    clock_ns: int | None = None,
) -> list[Metric]:
    """Metrics for parsed samples: the input's measurement and `instance` tag.

    `now_ns` dates samples without a timestamp; `clock_ns` (default `now_ns`)
    is when the payload was received, against which the VM's start time is read.
    """
    metrics = []
    for sample in samples:
        name = sample.measurement or measurement
        fields = sample.fields
        if name == measurement:
            fields = as_figures(_with_uptime(fields, clock_ns or now_ns))
        tags = {**sample.tags, "instance": instance}
        metrics.append(Metric(name, tags, dict(fields), sample.time_ns or now_ns))
    return metrics


def _with_uptime(fields: dict[str, FieldValue], now_ns: int) -> dict[str, FieldValue]:
    """Telemon's `uptime` (ms) from VM parameter 20 when the payload lacks it."""
    started_us = fields.get("startMicroseconds")
    if "uptime" in fields or type(started_us) is not int or started_us <= 0:
        return fields
    # Pharo's microsecond clock counts from 1901-01-01, not from 1970.
    uptime_ms = (now_ns // 1000 + _SMALLTALK_EPOCH_OFFSET_US - started_us) // 1000
    if uptime_ms < -_CLOCK_SKEW_MS:
        return fields  # a start time far in the future is no start time
    return {"uptime": max(uptime_ms, 0), **fields}


def _default_instances(urls: list[str], named: dict[str, str]) -> dict[str, str]:
    """The `instance` tag of each URL: its name, else the shortest that tells it apart.

    host:port; host:port/path where unnamed URLs share the host:port (images
    behind one server); host:port/path?query where they share that too. The
    query keeps its text but for parameters named like credentials (a tag is
    stored for good): URLs differing only in one are refused by
    `_instance_clash`.
    """
    unnamed = [url for url in urls if not named.get(url)]
    by_host = Counter(_host_port(url) for url in unnamed)
    by_path = Counter(_host_port(url) + _path(url) for url in unnamed)
    instances = {}
    for url in urls:
        if named.get(url):
            instances[url] = named[url]
        elif by_host[host_port := _host_port(url)] == 1:
            instances[url] = host_port
        elif by_path[with_path := host_port + _path(url)] == 1:
            instances[url] = with_path
        else:
            instances[url] = with_path + _shown_query(url)
    return instances


def _instance_clash(urls: list[str], instances: dict[str, str]) -> str | None:
    """Why two URLs would write the same series (one line naming the key), or None."""
    first: dict[str, int] = {}
    for index, url in enumerate(urls):
        earlier = first.setdefault(instances[url], index)
        if earlier == index:
            continue
        if urls[earlier] == url:
            return f"urls: urls.{index} repeats urls.{earlier}"
        return (
            f"instances: urls.{earlier} and urls.{index} would both be instance"
            f" {instances[url]!r}; give them different names in instances"
        )
    return None


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


def _shown_query(url: str) -> str:
    """The query as written, without parameters named like credentials; "" when none is left."""
    kept = [
        part
        for part in urlsplit(url).query.split("&")
        if part and not CREDENTIAL_NAME.search(unquote_plus(part.partition("=")[0]))
    ]
    return "?" + "&".join(kept) if kept else ""


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client_error(exc: aiohttp.ClientError) -> str:
    """One line naming what went wrong, without aiohttp's repr noise."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"response body broken off: {exc}"
    return f"{type(exc).__name__}: {exc}"


# --- what the registry (inputs/__init__.py) reads: docs, counters ---------------------------

SAMPLE_CONFIG = """\
## Pharo images' VM statistics, polled over HTTP: one target per URL. Each
## line is the "pharo" measurement with the original Telemon's fields
## (uptime, oldSpace, youngSpace, memory, memoryFree, fullGCs, fullGCTime,
## incrGCs, incrGCTime, tenureCount) plus whatever else the payload offers,
## and an "instance" tag naming the target.
# [[inputs.pharo]]
#   ## Statistics endpoints (required). Try it: `telemon simulate` serves
#   ## every format at http://127.0.0.1:8079/.
#   urls = ["http://127.0.0.1:8079/metrics"]
#
#   ## "auto" (by Content-Type and content), or one of "influx" (Telemon's own
#   ## lines), "json", "labels", "parameters" (Smalltalk vm getParameters),
#   ## "report" (Smalltalk vm statisticsReport).
#   format = "auto"
#
#   ## Measurement name for the VM figures.
#   measurement = "pharo"
#
#   ## How often to poll and how long one poll may take.
#   interval = "10s"
#   timeout = "5s"
#
#   ## A body larger than this (bytes) is cut off and the target marked down.
#   max_body_size = 1048576
#
#   ## Credentials for the target: basic auth with
#   ##   username = "telemon"
#   ##   password = "..."
#   ## or a bearer token with token = "..." or token_file = "/run/secrets/t".
#   ## TLS: tls_ca = "/etc/ssl/ca.pem" to trust a private CA, or
#   ##   insecure_skip_verify = true to skip verification (testing only).
#   insecure_skip_verify = false
#
#   ## The instance tag: the name given here, else host:port of the URL;
#   ## host:port/path where unnamed URLs share the host:port, and
#   ## host:port/path?query where they share the path too (parameters named
#   ## like credentials left out). URLs that would share one are refused.
#   instances = { "http://127.0.0.1:8079/metrics" = "blog" }
#
#   ## Extra request headers.
#   headers = { Accept = "*/*" }
#
#   ## Tags added to this table's lines.
#   [inputs.pharo.tags]
#     app = "blog"
"""
"""This input's part of telemon.example.toml (`telemon config` prints the whole file)."""

REFERENCE = """**`[[inputs.pharo]]`** - a Pharo image's VM statistics, polled over HTTP.

```toml
[[inputs.pharo]]
  urls = ["http://blog:8079/metrics", "http://shop:8079/vm/parameters"]
  # format = "auto"          # or influx, json, labels, parameters, report
  # measurement = "pharo"
  # max_body_size = 1048576  # bytes; a larger body marks the target down
  instances = { "http://blog:8079/metrics" = "blog" }   # else host:port, see below
  # headers = { X-Api = "..." }
  # username = "..."                       # with password = "...", or instead:
  # token = "..."                          # or token_file = "/run/secrets/pharo_token"
  # tls_ca = "/etc/ssl/private-ca.pem"
  # insecure_skip_verify = false
  [inputs.pharo.tags]
    app = "blog"
```

There is no standard statistics endpoint in Pharo; telemon reads every form
seen in the wild, picked by Content-Type and content with `format = "auto"`:

| format | what the image serves |
|---|---|
| `influx` | the original Telemon package's lines (`pharo,host=x uptime=2023314,oldSpace=...`: no types, no timestamp, no escaping); parsed tolerantly, re-encoded typed and timestamped, its own tags kept |
| `json` | an object of named values (`{"uptime": 1452854, "oldSpace": ...}`); nested objects flatten to `outer_inner` |
| `labels` | a list of `{"label": "oldSpace", "value": 173088768, "unit": "bytes"}` |
| `parameters` | the array of `Smalltalk vm getParameters` (1-based, `null` for nil); indices named as in Pharo's `VirtualMachine` (`edenSize`, `freeOldSpace`, `processSwitches`, JIT counters, ...); older VMs with fewer parameters are fine |
| `report` | the text of `Smalltalk vm statisticsReport`, read by label, with or without its "Since last view" block |

Whatever the format, each line carries the original Telemon's ten fields
whenever the payload has the data - `uptime` (ms), `oldSpace`,
`youngSpace`, `memory`, `memoryFree`, `fullGCs`, `fullGCTime`, `incrGCs`,
`incrGCTime`, `tenureCount` - so Grafana panels such as used memory =
`memory - memoryFree` work unchanged, plus every other value the payload
offers (`usedMemory`, `edenSize`, ...). Free memory follows Pharo's own
formula (freeOldSpace + edenSize - youngSpace). A non-2xx answer, a timeout,
a refused connection, an oversized or unreadable body each mark only that
target down (`telemon_input` `up=0i`, the reason in the log and on `/`);
polls never overlap, failing targets back off (doubling, capped at 5
minutes) and recover on their own, and the start of many targets is spread
over the interval.

**The instance tag** tells a table's targets apart: the name `instances`
gives a URL, else the shortest of host:port (`blog:8079`), host:port/path
where unnamed URLs share the host:port (`blog:8079/2/stats.json`: images
behind one server), host:port/path?query where they share the path too
(`blog:8079/metrics?vm=a`). The query is shown as written but for its
parameters named like credentials (`token`, `api_key`, `password`, `sig`,
...), which a tag, stored for good, never holds. Two URLs of a table that
would still get the same instance (the same URL twice, URLs differing only in
a credential, two URLs given one name) are refused by `telemon check`.

**One name, one type, one unit per figure.** Every figure telemon knows is
in one table (below, generated from `telemon/inputs/pharo_figures.py`).
Whatever the format, a figure lands in the same field with the same type -
times in ms, sizes in bytes, counts as integers, a few ratios as floats -
and the input declares these types, so no value of a VM is dropped because
two formats gave it different types. A payload names a figure by its name
in any case, with or without `_` or `-` (JSON `{"jit": {"compiledMethods":
1}}` gives `jitCompiledMethods`), or by an alias (`fullGCCount`,
`heapSize`, `edenSpaceSize`, ..., kept beside it); labels in `us`, `s`,
`KB`, ... are converted, and a figure's time or size rounded to an integer.
Names a payload has that are not in the table are written as they come,
typed by their first value. `json` and `labels` give whatever figures the
image names; of the rest, `parameters` gives the most (SPUR_COUNT from a Spur
VM of Pharo 12, CLASSIC_COUNT from a classic one), then `report` (13 from Pharo 8 to
12, 21 with its "Since last view" block), then `influx` (Telemon's ten, plus
the fields the image adds). Spur's parameter 16 is `idleTime` in ms (earlier versions wrote it
as `idleMicroseconds`, in microseconds).

**Classic VMs.** A `getParameters` array of 40 elements or fewer, with
parameters 4 and 5 set (nil on Spur) and parameter 2 not below parameter 1,
comes from a classic (pre-Spur) interpreter VM such as Squeak's. Its
parameters 1 to 3 are end addresses, so telemon writes `youngSpace` = p2 -
p1, `memoryFree` = p3 - p2 and `usedMemory` = p2; it leaves out slots 12 to
20 (unused there) and 38, and names parameters 4, 5 and 34 by what they
count (`allocationsSinceGC`, `allocationsBetweenGCs`,
`allocationsBeforeLastGC`: parameter 34 is not `bytesAllocated` there). Its
GC times (8, 10) and GC clock (36) are taken as microseconds, as the last
classic interpreters count them (Squeak 4.x, Debian's `squeak-vm`), and
written in ms, rounded to the nearest: nothing in the array tells them from
the older interpreters that counted ms, whose GC times would read 1000
times too small. Spur arrays keep Spur's meanings.

<details><summary>The figures: field, type, unit, and where each format has them</summary>

""" + figures_markdown(REPORT_NAMES) + """
</details>

**The simulator.** `telemon simulate` stands in for a Pharo image: its
values evolve like a real VM's (uptime rising, GC counters monotonic, old
space growing and shrinking at full GCs, free memory consistent). Paths:
`/metrics` (Telemon lines), `/stats.json`, `/stats/labels`,
`/vm/parameters`, `/vm/report`; with `--vms N`, VM 0 at those paths and VM n (1 to N-1) at `/<n>/...`;
with `--vm classic`, classic VMs (40 parameters in their meanings, the report with CR line ends). Make it
misbehave per request with `?fault=hang|slow|500|truncate|garbage|html|huge|wrongtype|empty|restart`
(or for every request with `--fault`) to see how telemon copes.
"""  # noqa: E501 - a markdown table row is one line
REFERENCE = (
    REFERENCE.replace("SPUR_COUNT", str(len(SPUR_PARAMETERS) + 3))  # + uptime, free and used
    .replace("CLASSIC_COUNT", str(len(CLASSIC_PARAMETERS)))
)
"""This input's part of the README's input reference (markdown)."""

COUNTER_FIELDS: tuple[str, ...] = (
    r"fullGCs|fullGCTime|incrGCs|incrGCTime|tenureCount",
    r"bytesAllocated",
)
"""Patterns of this input's cumulative field names (in any measurement: it can be renamed)."""

MEASUREMENT_COUNTERS: dict[str, tuple[str, ...]] = {
    "pharo": (
        # The other figures counted "since start-up" (pharo_figures.FIGURES).
        r"idleTime|compactionTime|rootTableOverflows|growRequests|shrinkRequests",
        r"processSwitches|ioProcessEvents|forceInterruptChecks|checkEvents",
        r"stackOverflows|stackDivorces|codeCompactions|codeCompactionTime",
        r"fullGCMarkTime|fullGCSweepTime|jit(CompiledMethods|MethodsTime|CompiledBlocks)",
        r"jitBlocksTime|totalGCs|sends(FullLookups|MethodCacheHits|InlineCacheHits)?",
    ),
}
"""Cumulative figures of the pharo measurement only (by its default name; a renamed one is
described as it)."""
