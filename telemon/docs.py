"""The example configuration file and the README's input reference, assembled.

Each input module carries its own part (`SAMPLE_CONFIG`, `REFERENCE`; see
`telemon.inputs`); the sections that belong to no input are here. Pure text:

    telemon config > telemon.example.toml     # the example file
    telemon config --readme README.md         # the README's "### Inputs" section

tests/test_docs.py fails when either file differs from what is assembled here.
"""

from __future__ import annotations

from telemon.catalog import Catalog, declared_measurements, meaning_of, unit_of
from telemon.inputs import InputsConfig
from telemon.promnames import PrometheusNames

__all__ = [
    "README_BEGIN",
    "README_END",
    "example_config",
    "inputs_reference",
    "with_inputs_reference",
]

README_BEGIN = (
    "<!-- inputs:begin - generated from each input module's REFERENCE:"
    " edit it there, then run `telemon config --readme README.md` -->"
)
README_END = "<!-- inputs:end -->"

_HEAD = """\
## telemon configuration file (sample)
##
## telemon serves metrics as InfluxDB line protocol over HTTP for Telegraf's
## [[inputs.http]] (data_format = "influx") to scrape.
##
## Copy this file to ./telemon.toml, or pass it with `telemon -c FILE`, or
## name it in $TELEMON_CONFIG. `telemon check -c FILE` validates it;
## `telemon once -c FILE` collects once and prints the inputs' lines (what
## /metrics serves, without telemon's own self-metrics).
## `telemon config` prints this file as this version of telemon documents it.
##
## As in Telegraf's sample.conf, lines starting with "##" explain, and lines
## starting with a single "#" are options shown at their default (or, for
## options that have none, at an example value). Remove the "# " to set one.
## Options described as alternatives ("use one of the two") exclude each
## other. Unknown keys are errors.
##
## Durations are written as in Telegraf: "500ms", "10s", "1m", "1m30s"
## (units ns, us, ms, s, m, h), or a number of seconds.
##
## Environment variables are replaced before parsing, as in Telegraf:
## token = "${TELEMON_TOKEN}", port numbers bare (${PORT}), defaults with
## "${VAR:-default}", "$$" for a literal "$". An unset ${VAR} without a default
## is an error naming the line.
##
## Without any file telemon runs with the built-in defaults, which are exactly
## this file as it is: listen on 127.0.0.1:8080, inputs process and python.
## Once a file has an [inputs] section, only the inputs it lists run.


## Tags added to every line telemon serves (also set with --tag KEY=VALUE).
## Keys must not be empty nor "time", "_field" or "_measurement".
[global_tags]
  # dc = "us-east-1"
  # service = "blog"


## How inputs are collected and how numbers and timestamps are written.
[agent]
  ## Default collection interval of every input.
  # interval = "10s"

  ## Default time an input's collection may take before it counts as failed.
  # timeout = "5s"

  ## Time one field of an [[inputs.fields]] table may take at each scrape;
  ## a field that takes longer is left out of that scrape.
  # field_timeout = "1s"

  ## Timestamp precision: "ns", "us", "ms" or "s" (Telegraf's "1ns" ... "1s"
  ## are accepted too). Telegraf reads nanoseconds unless influx_timestamp_precision
  ## in its [[inputs.http]] says otherwise: set both alike.
  # precision = "ns"

  ## Write lines without a timestamp; Telegraf then stamps them on arrival.
  ## Not with [[outputs.*]], whose spooled lines need their timestamps.
  # omit_timestamp = false

  ## Write integer fields as "integer" (42i) or as "float" (42.0); "float" is
  ## what the original Telemon wrote: use it to keep writing into its series.
  # integer_type = "integer"

  ## Write integers above the int64 range as unsigned (42u) instead of
  ## clamping them; only for databases that accept unsigned integers.
  # uint_support = false


## The HTTP endpoint Telegraf scrapes.
##
##   [[inputs.http]]
##     urls = ["http://127.0.0.1:8080/metrics"]
##     data_format = "influx"
##
## /healthz answers "ok" without authentication; / is a status page.
[http]
  ## Address to listen on, "HOST:PORT" (":8080" listens on every interface).
  ## Overridden by --listen HOST:PORT.
  # listen = "127.0.0.1:8080"

  ## Path serving the line protocol (not "/" nor "/healthz").
  # path = "/metrics"

  ## Gzip responses of 1 KiB or more when the client accepts it (Telegraf does).
  # gzip = true

  ## Basic authentication: a username and its password, given either inline
  ## or in password_file (use one of the two, not both). In Telegraf, set the
  ## same username and password in [[inputs.http]].
  # username = "telegraf"
  # password = "change-me"
  # password_file = "/etc/telemon/password"

  ## Bearer token authentication: the token, given either inline or in
  ## token_file (use one of the two, not both). In Telegraf's [[inputs.http]],
  ## set token_file to the same file (or token = "...").
  ## Secret files are read once at start-up, surrounding whitespace removed.
  ## With both basic and bearer authentication set, either one gets in.
  # token = "change-me-too"
  # token_file = "/etc/telemon/token"

  ## TLS: serve https with this certificate (chain) and private key, both PEM,
  ## the key without a passphrase; set both or neither. Telegraf then scrapes
  ## https://... and may need tls_ca in its [[inputs.http]] to trust the
  ## certificate.
  # tls_cert = "/etc/telemon/cert.pem"
  # tls_key = "/etc/telemon/key.pem"

  ## Most HTTP connections held at once. Past it, a new connection replaces
  ## the oldest one that has no request in progress (clients that connect and
  ## send nothing go first; a fresh scrape or /healthz always gets in), or is
  ## answered 503 when every connection is in a request. Unset, it is three
  ## quarters of the open-file limit (`ulimit -n`), leaving at least 256
  ## descriptors for targets, outputs and the spool (768 for 1024); set it
  ## below that limit, or accept() fails for everyone once descriptors run out.
  # max_connections = 768

  ## Close a connection that has sent no whole request for this long: idle
  ## keep-alive connections between scrapes, and clients that open a
  ## connection and send nothing or only part of the headers. Telegraf keeps
  ## its connection between scrapes: leave it above agent.interval to reuse it.
  # idle_timeout = "15s"


## The Prometheus text format (0.0.4), served at the same path to clients that
## ask for it: ?format=prometheus, or an Accept header listing
## "text/plain; version=0.0.4" (Prometheus itself, Telegraf's
## [[inputs.prometheus]]). Everything else gets line protocol; ?format=influx
## forces it. Names are <measurement>_<field> (a field "value" gives just
## <measurement>), tags are labels, as Telegraf's outputs.prometheus_client.
##
##   scrape_configs:
##     - job_name: telemon
##       static_configs: [{targets: ["127.0.0.1:8080"]}]
[prometheus]
  ## Write each sample's timestamp (milliseconds). Exporters usually leave it
  ## out: Prometheus then stamps samples with the scrape time.
  # timestamps = false

  ## Serve string fields as labels of their measurement's samples (their
  ## values then name new series whenever they change); by default string
  ## fields are left out.
  # string_as_label = false

  ## How samples are named: "prometheus" follows Prometheus's conventions
  ## (snake_case, base units: pharo fullGCTime in ms is
  ## pharo_full_gc_time_seconds_total in seconds; `_total` on counters; HELP
  ## says what each is); "telegraf" writes `<measurement>_<field>` with values
  ## as they are, as Telegraf's outputs.prometheus_client does.
  # naming = "prometheus"


## Accept line protocol pushed to telemon, as Telegraf's [[outputs.http]]
## sends it (or an InfluxDB client writing to /write or /api/v2/write), and
## serve it again on the metrics path: the latest value of each series
## (measurement and tag set; fields merged, the newest timestamp wins).
## POST or PUT, plain or gzip; 204 on success, 400 naming the refused lines
## (the others are kept, as InfluxDB does), 401 without the [http]
## credentials (also accepted as "Authorization: Token ..." and ?u=...&p=...),
## 413 past max_body_size, 503 with Retry-After past max_series, max_bytes or
## max_concurrent_writes. ?precision= takes n/ns, u/us, ms or s; db, rp, org
## and bucket are ignored. Lines without a timestamp get the arrival time.
##
##   [[outputs.http]]
##     url = "http://127.0.0.1:8080/telegraf"
##     data_format = "influx"
##     content_encoding = "gzip"
[sink]
  ## Accept writes at all (off unless set).
  # enabled = false

  ## Paths accepting writes (not the metrics path, "/" nor "/healthz").
  # paths = ["/telegraf", "/write", "/api/v2/write"]

  ## Forget a field this long after it last arrived (default: twice
  ## agent.interval); a series goes when its last field does.
  # ttl = "20s"

  ## Largest body accepted, in bytes, as sent and once inflated (10 MiB).
  # max_body_size = 10485760

  ## Most series kept. Past it, lines of new series are dropped (known series
  ## still update) and the write answers 503 with Retry-After until some
  ## series expire.
  # max_series = 100000

  ## Most memory the kept series may take, in bytes (estimated: their text,
  ## values and the objects holding them; a string value counts at most the
  ## 64 KiB it is served with). Past it, lines adding a series or a field
  ## are dropped (known fields still update), answered as max_series is.
  # max_bytes = 268435456

  ## Writes handled at once; another one is answered 503 with Retry-After: 1
  ## before its body is read. Each running write holds its body about twice
  ## (as sent and as text), so this bounds the sink's memory for writes:
  ## max_concurrent_writes x 2 x max_body_size.
  # max_concurrent_writes = 4

  ## Longest line accepted, in bytes (InfluxDB's strings are meant to stay
  ## under 64 KiB); a longer line is refused with a 400 naming it
  ## ("line exceeds max_line_bytes"), before its fields are read.
  # max_line_bytes = 1048576

  ## Most fields in one line; a line with more is refused with a 400 naming
  ## it ("line exceeds max_fields_per_line").
  # max_fields_per_line = 1000


###############################################################################
##                                  INPUTS                                   ##
###############################################################################
##
## Each [[inputs.NAME]] table is one input; repeat a table to run the input
## several times. Every input table also takes:
##   interval = "10s"   overrides agent.interval for this table
##   timeout = "5s"     overrides agent.timeout for this table
##   [inputs.NAME.tags] tags added to this table's lines (after its other keys)
"""
"""Everything before the inputs: the sections of telemon itself and the inputs' common keys."""

_OUTPUTS = """\
## Push everything collected into InfluxDB 1.x at every flush_interval
## (for setups without Telegraf). Every URL gets every line. Lines that cannot
## be written (database down, 5xx, 429, timeouts) are kept in a spool and
## written in order once the database answers again; other 4xx answers drop
## the batch (counted in the telemon_output measurement).
## Credentials (basic auth), if the database needs them:
##   username = "telemon"
##   password = "..."          or, from a file (a Docker/Kubernetes secret):
##   password_file = "/run/secrets/influxdb_password"
## For an https:// URL signed by a private CA:
##   tls_ca = "/etc/telemon/influxdb-ca.pem"
# [[outputs.influxdb]]
#   ## Where to write.
#   urls = ["http://127.0.0.1:8086"]
#
#   ## Database and retention policy ("" is the database's default policy).
#   database = "telegraf"
#   retention_policy = ""
#
#   ## Leave CREATE DATABASE (sent before the first write) out.
#   skip_database_creation = false
#
#   ## How often to write (default: agent.interval), lines per request, and
#   ## how long one request may take.
#   flush_interval = "10s"
#   metric_batch_size = 1000
#   timeout = "5s"
#
#   ## "gzip" or "identity".
#   content_encoding = "gzip"
#
#   ## Retries back off exponentially (with jitter) up to this interval.
#   max_retry_interval = "1m"
#
#   ## Directory keeping unwritten batches across restarts (without it they are
#   ## kept in memory only), and its bound: the oldest are dropped when full.
#   spool_dir = "/var/lib/telemon/spool"
#   spool_max_bytes = 104857600
#
#   ## Accept any certificate of an https:// URL (tests only).
#   insecure_skip_verify = false


## The same for InfluxDB 2.x (through the influxdb-client package, installed
## with `pip install -e ".[influxdb]"`), or anything serving /api/v2/write.
## The API token, if the database needs one: token = "...", or from a file
## (a Docker/Kubernetes secret): token_file = "/run/secrets/influxdb_token".
## For an https:// URL signed by a private CA: tls_ca = "/etc/telemon/ca.pem".
# [[outputs.influxdb_v2]]
#   ## Where to write (bucket is required).
#   url = "http://127.0.0.1:8086"
#   org = ""
#   bucket = "telemon"
#
#   ## How often to write (default: agent.interval), lines per request, and
#   ## how long one request may take.
#   flush_interval = "10s"
#   metric_batch_size = 1000
#   timeout = "5s"
#
#   ## "gzip" or "identity".
#   content_encoding = "gzip"
#
#   ## Retries back off exponentially (with jitter) up to this interval.
#   max_retry_interval = "1m"
#
#   ## Unwritten batches: directory (memory only without it) and bound.
#   spool_dir = "/var/lib/telemon/spool"
#   spool_max_bytes = 104857600
#
#   ## Accept any certificate of an https:// URL (tests only).
#   insecure_skip_verify = false
"""
"""The outputs, after the inputs (as in Telegraf's sample configuration)."""


def example_config() -> str:
    """telemon.example.toml: telemon's sections, each registered input's tables, the outputs."""
    samples = [spec.sample for spec in InputsConfig.registry()]
    # Each part ends with one newline: two blank lines between parts.
    return "\n\n".join([_HEAD, *samples, _OUTPUTS])


def inputs_reference() -> str:
    """The README's input reference, markers included: each registered input's text."""
    references = [spec.reference for spec in InputsConfig.registry()]
    return "\n".join([README_BEGIN, "\n".join(references), README_END]) + "\n"


def with_inputs_reference(readme: str) -> str:
    """`readme` with the text between the markers replaced by `inputs_reference()`.

    Raises ValueError when the markers are not there, once each and in order.
    """
    begin = readme.find(README_BEGIN)
    end = readme.find(README_END)
    if begin < 0 or end < begin or readme.count(README_BEGIN) + readme.count(README_END) != 2:
        raise ValueError(f"expected one {README_BEGIN!r} line before one {README_END!r} line")
    end += len(README_END) + 1  # and its newline
    return readme[:begin] + inputs_reference() + readme[end:]


# --- docs/measurements.md: what telemon writes --------------------------------------------
#
# Generated from what the code declares (the inputs' `field_types()`, Pharo's
# `FIGURES` with their units, the self-metrics' values), so that it cannot drift;
# tests/test_reference.py compares it with what a full `telemon once` prints.
# Tags are not declared anywhere else: they are listed here, and the test
# fails when an input writes a tag missing from this table.

MEASUREMENTS_FILE = "docs/measurements.md"

TAGS: dict[str, dict[str, str]] = {
    "pharo": {
        "instance": "the target's name: `instances`, a discovered container's name, or "
        "host:port[/path][?query] of its URL",
        "host": "the image's own tag, as the Telemon package's `influx` lines carry it "
        "(any other tag of those lines is kept as well)",
        "container_name": "discovered by the docker input (`discover_pharo`)",
        "engine_host": "discovered: the Docker engine's host name (as on `docker_container_*`"
        " lines, to join a VM with its container)",
    },
    "cgroup": {"cgroup": "the cgroup's path", "version": "`1` or `2`"},
    "process": {
        "process_name": "the process's name",
        "pattern": "with `pattern`",
        "pidfile": "with `pid_file`",
        "pid": "with `pid`",
    },
    "python": {"implementation": "`cpython`, `pypy`...", "python_version": "e.g. `3.11.7`"},
    "docker": {"engine_host": "the engine's host name", "server_version": "the engine's version"},
    "docker_container": {
        "engine_host": "the engine's host name",
        "server_version": "the engine's version",
        "container_name": "the container's name",
        "container_image": "its image, without the tag",
        "container_version": "the image's tag",
        "container_status": "`running`, `exited`...",
        "*": "the container's labels (`docker_label_include` / `_exclude`)",
    },
    "docker_container_cpu": {"cpu": "`cpu-total`, or `cpu0`, `cpu1`... per CPU"},
    "docker_container_net": {"network": "the interface, or `total`"},
    "docker_container_blkio": {"device": "major:minor, or `total`"},
    "telemon_input": {"input": "the input's name", "target": "the target's name"},
    "telemon_output": {"output": "`influxdb` or `influxdb_v2`", "url": "the output's URL"},
}
"""The tags each input writes, by measurement (`docker_container`: every `docker_container_*`)."""


_KIND_WORDS = {"i": "integer", "u": "unsigned", "f": "float", "b": "boolean", "s": "string"}

_MEASUREMENTS_HEAD = """\
# What telemon writes

<!-- generated by telemon.docs.measurements_reference() from what the code declares:
     run `python -m telemon.docs > docs/measurements.md`; tests/test_reference.py fails
     when this file or a full `telemon once` differs from it -->

Every measurement, tag and field telemon writes, with its line-protocol type,
its unit and the input that writes it. Types are fixed: a field is always
written with the type listed (an integer is `42i`; with `[agent] integer_type
= "unsigned"` integers are written as unsigned, `42u`). Besides the tags
listed, every line carries the `[global_tags]` and its input table's `tags`.
The measurement names are the defaults; `measurement = "..."` renames those
of cgroup, process, python and pharo.

`[[inputs.fields]]` writes the measurement and fields you name, each field
with the type of its first value (bool, int, float or string), and the tags
you give.

The Prometheus name is the sample's name in `/metrics?format=prometheus`
(`[prometheus] naming = "prometheus"`, the default): snake_case, in base
units (times in seconds, sizes in bytes, percentages as ratios), `_total` on
counters. With `naming = "telegraf"` it is `<measurement>_<field>`, as
Telegraf's `outputs.prometheus_client` writes it. String fields are not
samples.
"""


def measurements_reference() -> str:
    """docs/measurements.md: one section per measurement, its tags and its fields."""
    names = PrometheusNames(Catalog.for_config())
    parts = [_MEASUREMENTS_HEAD]
    for measurement, (input_name, kinds) in declared_measurements().items():
        parts.append(f"\n## `{measurement}`\n\nWritten by: {input_name}.\n")
        tags = _tags_of(measurement)
        if tags:
            parts.append("\n| tag | value |\n|---|---|\n")
            parts.extend(f"| `{tag}` | {meaning} |\n" for tag, meaning in tags.items())
        parts.append("\n| field | type | unit | meaning | Prometheus name |\n")
        parts.append("|---|---|---|---|---|\n")
        for field, kind in kinds.items():
            unit, meaning = unit_of(measurement, field, kind), meaning_of(measurement, field)
            name = f"`{names.family(measurement, field).name}`" if kind != "s" else "-"
            parts.append(f"| `{field}` | {_KIND_WORDS[kind]} | {unit} | {meaning} | {name} |\n")
    return "".join(parts)


def _tags_of(measurement: str) -> dict[str, str]:
    if measurement.startswith("docker_container_"):
        return {**TAGS["docker_container"], **TAGS.get(measurement, {})}
    return TAGS.get(measurement, {})


if __name__ == "__main__":
    import sys

    sys.stdout.write(measurements_reference())
