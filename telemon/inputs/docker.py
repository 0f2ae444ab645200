"""`[[inputs.docker]]`: containers' CPU, memory, network, block I/O and status.

One target per engine. Each poll reads `/info` and the container list, then
each selected container's one-shot stats and inspect document, concurrently
with a bound and a timeout per call. Measurements and fields are Telegraf's
`inputs.docker` ones (see `docker_stats`). With `discover_pharo = true`,
containers labelled `telemon.pharo.port` are polled as Pharo targets for
as long as they run.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeGuard, get_args

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from telemon.inputs import docker_stats as ds
from telemon.inputs.base import Discovered, InputConfig, InputContext, InputError, Target
from telemon.inputs.docker_api import EngineClient, NotFound, check_endpoint
from telemon.inputs.pharo import TELEMON_FIELD_TYPES, PharoConfig, PharoFormat
from telemon.metric import FieldValue, Metric
from telemon.schema import Duration, check_url_port, display_url
from telemon.tls import ClientCertTLS

__all__ = [
    "COUNTER_FIELDS",
    "MEASUREMENT_COUNTERS",
    "REFERENCE",
    "SAMPLE_CONFIG",
    "DockerConfig",
    "DockerTarget",
    "PharoLabelError",
    "pharo_endpoint",
]

ContainerState = Literal["created", "restarting", "running", "removing", "paused", "exited", "dead"]
Device = Literal["cpu", "blkio", "network"]
PHARO_LABEL = "telemon.pharo."
# Discovered images are polled with the defaults of an `[[inputs.pharo]]` table.
DISCOVERED_PHARO_MEASUREMENT: str = PharoConfig.model_fields["measurement"].default
LOCAL_ENDPOINT = "unix:///var/run/docker.sock"
ENV_ENDPOINT = "ENV"
"""Telegraf's `endpoint = "ENV"`: the engine `$DOCKER_HOST` names, as the docker CLI does."""


class _FromDockerHost(str):
    """An endpoint read from `$DOCKER_HOST` (its errors say so)."""

    __slots__ = ()


def _default_endpoint() -> str:
    """`$DOCKER_HOST`, else the local socket: read when the configuration is checked."""
    host = os.environ.get("DOCKER_HOST", "").strip()
    return _FromDockerHost(host) if host else LOCAL_ENDPOINT


def _resolve_endpoint(value: object) -> object:
    if value == ENV_ENDPOINT:
        value = _default_endpoint()
    if not isinstance(value, _FromDockerHost):
        return value
    try:
        return check_url_port(check_endpoint(str(value)))
    except ValueError as exc:
        raise ValueError(f"from DOCKER_HOST: {exc}") from None


class DockerConfig(InputConfig, ClientCertTLS):
    """Which engine, which containers, which labels become tags."""

    endpoint: Annotated[
        str,
        BeforeValidator(_resolve_endpoint),
        AfterValidator(check_endpoint),
        AfterValidator(check_url_port),
    ] = Field(default_factory=_default_endpoint, validate_default=True)
    container_name_include: list[str] = Field(default_factory=list)
    container_name_exclude: list[str] = Field(default_factory=list)
    container_state_include: list[ContainerState] = Field(default_factory=list)
    container_state_exclude: list[ContainerState] = Field(default_factory=list)
    docker_label_include: list[str] = Field(default_factory=list)
    docker_label_exclude: list[str] = Field(default_factory=list)
    perdevice_include: list[Device] = Field(default_factory=lambda: _devices("cpu", "network"))
    total_include: list[Device] = Field(default_factory=lambda: _devices("cpu", "blkio", "network"))
    stats_timeout: Duration = 3.0
    max_concurrency: int = Field(default=64, ge=1, le=1024)
    max_body_size: int = Field(default=16 * 1024 * 1024, gt=0)
    discover_pharo: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> DockerConfig:
        # One slow container must be skipped before the whole poll times out.
        if self.timeout is not None and self.stats_timeout >= self.timeout:
            raise ValueError("stats_timeout must be shorter than timeout")
        if self.uses_tls and self.endpoint.startswith("unix:"):
            raise ValueError("TLS settings need a tcp:// or https:// endpoint")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether any TLS setting is given (the endpoint is then spoken to over TLS)."""
        files = (self.tls_ca, self.tls_cert, self.tls_key)
        return self.insecure_skip_verify or any(path is not None for path in files)

    def build(self, context: InputContext) -> list[Target]:
        """One target: the engine."""
        return [DockerTarget(self, context)]

    def field_types(self) -> dict[str, dict[str, str]]:
        """Telegraf's `inputs.docker` types, and Telemon's fields of discovered Pharo images."""
        kinds = {measurement: dict(fields) for measurement, fields in ds.FIELD_TYPES.items()}
        if self.discover_pharo:
            kinds[DISCOVERED_PHARO_MEASUREMENT] = dict(TELEMON_FIELD_TYPES)
        return kinds

    def wanted_states(self) -> set[str]:
        """Container states to report: running only unless a state list is set."""
        states = set(self.container_state_include or get_args(ContainerState))
        if not self.container_state_include and not self.container_state_exclude:
            states = {"running"}
        return states - set(self.container_state_exclude)

    def wants_name(self, name: str) -> bool:
        """The name filters, globs as in Telegraf (empty include = all)."""
        included = not self.container_name_include or _matches(name, self.container_name_include)
        return included and not _matches(name, self.container_name_exclude)

    def tag_labels(self, labels: dict[str, str]) -> dict[str, str]:
        """The labels that become tags (empty include = all, as in Telegraf)."""
        return {
            key: value
            for key, value in labels.items()
            if (not self.docker_label_include or _matches(key, self.docker_label_include))
            and not _matches(key, self.docker_label_exclude)
        }


def _devices(*names: Device) -> list[Device]:
    return list(names)


def _matches(name: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


@dataclass(slots=True)
class _Round:
    """What one poll gathers, plus its failures that are not the engine's."""

    now_ns: int
    engine_tags: dict[str, str]
    podman: bool
    metrics: list[Metric] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class DockerTarget(Target):
    """One Docker (or Podman) engine."""

    def __init__(self, config: DockerConfig, context: InputContext) -> None:
        super().__init__(display_url(config.endpoint))
        self.config = config
        self.context = context
        self.client = EngineClient(
            config.endpoint,
            max_body_size=config.max_body_size,
            connections=config.max_concurrency,
            tls=config.tls_context(),
        )
        self.cpu = ds.CpuTracker()
        self._limit = asyncio.Semaphore(config.max_concurrency)
        self._discovered: dict[str, Discovered] = {}

    async def collect(self, now_ns: int) -> list[Metric]:
        """One poll of the engine and its selected containers."""
        timeout = self.config.stats_timeout
        info = await self.client.get_json("/info", timeout=timeout)
        if not isinstance(info, dict):
            raise InputError("/info: the engine answered no JSON object")
        wanted = self.config.wanted_states()
        listing = await self._list(all_states=wanted != {"running"}, timeout=timeout)
        version = self.client.version
        engine_tags = {
            "engine_host": str(info.get("Name") or ""),
            "server_version": str(info.get("ServerVersion") or ""),
        }
        round_ = _Round(now_ns, engine_tags, podman=bool(version and version.podman))
        round_.metrics.append(Metric("docker", dict(engine_tags), ds.engine_fields(info), now_ns))
        selected = [
            c
            for c in listing
            if c.get("State") in wanted
            and self.config.wants_name(ds.container_name(c.get("Names")))
        ]
        await asyncio.gather(*(self._container(round_, c) for c in selected))
        self.cpu.keep_only({str(c.get("Id")) for c in listing})
        if self.config.discover_pharo:
            self._discover(round_, listing)
        for reason in round_.errors:
            self.note_partial_error(reason)
        return round_.metrics

    async def _list(self, *, all_states: bool, timeout: float) -> list[dict[str, Any]]:
        listing = await self.client.get_json(
            "/containers/json", {"all": "1" if all_states else "0"}, timeout=timeout
        )
        if not isinstance(listing, list):
            raise InputError("/containers/json: the engine answered no JSON list")
        return [c for c in listing if isinstance(c, dict) and isinstance(c.get("Id"), str)]

    async def _container(self, round_: _Round, item: dict[str, Any]) -> None:
        """Status and stats of one container; a vanished container is skipped quietly."""
        container_id = item["Id"]
        name = ds.container_name(item.get("Names"))
        try:
            async with self._limit, asyncio.timeout(self.config.stats_timeout):
                inspect = ds.as_object(
                    await self.client.get_json(f"/containers/{container_id}/json")
                )
                stats = None
                state = ds.as_object(inspect.get("State"))
                # A restarting container counts as running but has no stats:
                # the engine answers zeros, which would read as counter resets.
                if state.get("Running") and not state.get("Restarting"):
                    stats = await self.client.get_json(
                        f"/containers/{container_id}/stats", self._stats_params()
                    )
        except NotFound:
            return  # removed between the listing and now: not an error
        except TimeoutError:
            round_.errors.append(
                f"container {name}: no answer within {self.config.stats_timeout:g}s"
            )
            return
        except InputError as exc:
            round_.errors.append(f"container {name}: {exc}")
            return
        tags = self._container_tags(round_, item, inspect)
        round_.metrics += self._container_metrics(round_, container_id, tags, inspect, stats)

    def _stats_params(self) -> dict[str, str]:
        version = self.client.version
        if version is not None and version.one_shot and not version.podman:
            return {"stream": "false", "one-shot": "true"}
        return {"stream": "false"}

    def _container_tags(
        self, round_: _Round, item: dict[str, Any], inspect: dict[str, Any]
    ) -> dict[str, str]:
        image, version = ds.parse_image(str(item.get("Image") or ""))
        labels = item.get("Labels")
        labels = labels if isinstance(labels, dict) else {}
        status = ds.as_object(inspect.get("State")).get("Status") or item.get("State") or ""
        return {
            **self.config.tag_labels({str(k): str(v) for k, v in labels.items()}),
            **round_.engine_tags,
            "container_name": ds.container_name(item.get("Names")),
            "container_image": image,
            "container_version": version,
            "container_status": str(status),
        }

    def _container_metrics(
        self,
        round_: _Round,
        container_id: str,
        tags: dict[str, str],
        inspect: dict[str, Any],
        stats: Any,
    ) -> list[Metric]:
        now_ns = round_.now_ns
        metrics = [
            Metric(
                "docker_container_status",
                tags,
                ds.status_fields(inspect, container_id, now_ns),
                now_ns,
            )
        ]
        health = ds.health_fields(inspect)
        if health:
            metrics.append(Metric("docker_container_health", tags, health, now_ns))
        if isinstance(stats, dict) and not ds.is_empty_stats(stats):
            metrics += self._stats_metrics(round_, container_id, tags, stats)
        return metrics

    def _stats_metrics(
        self, round_: _Round, container_id: str, tags: dict[str, str], stats: dict[str, Any]
    ) -> list[Metric]:
        # Stats lines carry the engine's read time, as in Telegraf.
        read_ns = ds.parse_timestamp_ns(stats.get("read")) or round_.now_ns
        per_device, total = set(self.config.perdevice_include), set(self.config.total_include)
        metrics: list[Metric] = []

        def add(measurement: str, extra: dict[str, str], fields: dict[str, FieldValue]) -> None:
            if fields:
                metrics.append(Metric(measurement, {**tags, **extra}, fields, read_ns))

        memory = stats.get("memory_stats")
        if isinstance(memory, dict):
            add(
                "docker_container_mem",
                {},
                ds.mem_fields(memory, container_id, podman=round_.podman),
            )
        sample = ds.CpuSample.from_stats(stats)
        if sample is not None:
            percent = self.cpu.percent(container_id, sample, wall_clock=round_.podman)
            if "cpu" in total:
                add(
                    "docker_container_cpu",
                    {"cpu": "cpu-total"},
                    ds.cpu_fields(stats, container_id, percent),
                )
            if "cpu" in per_device:
                for cpu, fields in ds.percpu_points(stats, container_id):
                    add("docker_container_cpu", {"cpu": cpu}, fields)
        for network, fields in ds.net_points(
            stats, container_id, per_interface="network" in per_device, total="network" in total
        ):
            add("docker_container_net", {"network": network}, fields)
        for device, fields in ds.blkio_points(
            stats, container_id, per_device="blkio" in per_device, total="blkio" in total
        ):
            add("docker_container_blkio", {"device": device}, fields)
        return metrics

    def _discover(self, round_: _Round, listing: list[dict[str, Any]]) -> None:
        """Hand the collector the Pharo targets that running, labelled containers name."""
        if self.context.discovery is None:
            return
        found = []
        for item in listing:
            if item.get("State") != "running" or not _has_pharo_label(item):
                continue
            name = ds.container_name(item.get("Names"))
            if not self.config.wants_name(name):
                continue  # the name filters choose the discovered containers too
            try:
                url, data_format = pharo_endpoint(item)
            except PharoLabelError as exc:
                round_.errors.append(f"container {name}: {exc}")
                continue
            key = f"{item['Id']} {url}"
            known = self._discovered.get(key)
            if known is None:  # a target is built once per container, not once per poll
                config = PharoConfig(urls=[url], format=data_format, instances={url: name})
                [target] = config.build(self.context)
                tags = {"container_name": name, "engine_host": round_.engine_tags["engine_host"]}
                known = Discovered(key, target, tags)
            found.append(known)
        self._discovered = {item.key: item for item in found}
        self.context.discovery(self, "pharo", found)

    async def aclose(self) -> None:
        """Close the engine connections."""
        await self.client.aclose()


class PharoLabelError(ValueError):
    """A `telemon.pharo.*` label that cannot be used; the message names it."""


def _has_pharo_label(item: dict[str, Any]) -> bool:
    labels = item.get("Labels")
    return isinstance(labels, dict) and f"{PHARO_LABEL}port" in labels


def pharo_endpoint(item: dict[str, Any]) -> tuple[str, PharoFormat]:
    """(URL, format) of the Pharo image in a labelled container list item.

    Reached at the container's address on its network (the one the
    `telemon.pharo.network` label names, else the first by name), on the
    host's loopback for host networking, or else at its published port.
    """
    labels = {str(k): str(v) for k, v in ds.as_object(item.get("Labels")).items()}
    port = _label_port(labels)
    scheme = labels.get(f"{PHARO_LABEL}scheme", "http")
    if scheme not in ("http", "https"):
        raise PharoLabelError(f"label {PHARO_LABEL}scheme={scheme!r} is not http or https")
    path = labels.get(f"{PHARO_LABEL}path", "/metrics")
    if not path.startswith("/"):
        raise PharoLabelError(f"label {PHARO_LABEL}path={path!r} does not start with /")
    data_format = labels.get(f"{PHARO_LABEL}format", "auto")
    if data_format not in get_args(PharoFormat):
        choices = ", ".join(get_args(PharoFormat))
        raise PharoLabelError(f"label {PHARO_LABEL}format={data_format!r} is not one of {choices}")
    host, port = _address(item, labels, port)
    return f"{scheme}://{host}:{port}{path}", data_format  # type: ignore[return-value]


def _label_port(labels: dict[str, str]) -> int:
    raw = labels.get(f"{PHARO_LABEL}port", "")
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 65536:  # "²" is a digit
        raise PharoLabelError(f"label {PHARO_LABEL}port={raw!r} is not a port number")
    return int(raw)


def _address(item: dict[str, Any], labels: dict[str, str], port: int) -> tuple[str, int]:
    """(host as it goes in a URL, port) where the container's port is reachable."""
    mode = ds.as_object(item.get("HostConfig")).get("NetworkMode")
    if mode == "host":
        return "127.0.0.1", port
    networks = ds.as_object(ds.as_object(item.get("NetworkSettings")).get("Networks"))
    chosen = labels.get(f"{PHARO_LABEL}network")
    if chosen is not None and chosen not in networks:
        raise PharoLabelError(f"label {PHARO_LABEL}network={chosen!r}: not one of its networks")
    for name in [chosen] if chosen else sorted(networks):
        address = ds.as_object(networks.get(name)).get("IPAddress")
        if isinstance(address, str) and address:
            return _url_host(address), port
    for published in map(ds.as_object, ds.as_array(item.get("Ports"))):
        public = published.get("PublicPort")
        # A lying engine's port would make a URL `[[inputs.pharo]]` refuses.
        if published.get("PrivatePort") == port and _is_port(public):
            host = str(published.get("IP") or "")
            if host in ("", "0.0.0.0", "::"):
                host = "127.0.0.1"
            return _url_host(host), public
    raise PharoLabelError(f"port {port} is reachable on no network and not published")


def _is_port(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 < value < 65536


def _url_host(address: str) -> str:
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        raise PharoLabelError(f"the engine gave {address[:60]!r}, not an IP address") from None
    return f"[{address}]" if version == 6 else address


# --- what the registry (inputs/__init__.py) reads: docs, counters ---------------------------

SAMPLE_CONFIG = """\
## Containers of a Docker (or Podman) engine, with Telegraf's inputs.docker
## measurements: docker, docker_container_mem (with working_set: usage minus
## inactive file cache, as `docker stats` shows it), docker_container_cpu,
## docker_container_net, docker_container_blkio, docker_container_status and
## docker_container_health. telemon needs read access to the socket (the
## docker group; in a container, group_add with the socket's group id).
# [[inputs.docker]]
#   ## Collection interval and timeout of this table (default: the agent's).
#   interval = "10s"
#   timeout = "5s"
#
#   ## The engine: unix:///path/to.sock, tcp://host:port or http(s)://host:port.
#   ## Left out, or "ENV" (as in Telegraf): $DOCKER_HOST when it is set, read
#   ## when the file is checked (TLS settings are not read from DOCKER_CERT_PATH:
#   ## set the tls_ keys below). Otherwise the local socket:
#   endpoint = "unix:///var/run/docker.sock"
#
#   ## Containers by name (globs; an empty include list means all).
#   container_name_include = []
#   container_name_exclude = []
#
#   ## Containers by state: created, restarting, running, removing, paused,
#   ## exited, dead. With both lists empty only running containers are read.
#   container_state_include = []
#   container_state_exclude = []
#
#   ## Which container labels become tags (globs; an empty include list means
#   ## every label, as in Telegraf).
#   docker_label_include = []
#   docker_label_exclude = []
#
#   ## Points per device ("cpu": cpu0, cpu1...; "network": per interface;
#   ## "blkio": per major:minor) and totals (cpu=cpu-total, network=total,
#   ## device=total).
#   perdevice_include = ["cpu", "network"]
#   total_include = ["cpu", "blkio", "network"]
#
#   ## Time one container's inspect and stats calls may take together (keep
#   ## it below timeout: a slow container is skipped, the poll goes on), how
#   ## many containers are read at once, and the largest answer accepted.
#   stats_timeout = "3s"
#   max_concurrency = 64
#   max_body_size = 16777216
#
#   ## Poll every running container labelled telemon.pharo.port=PORT as a
#   ## Pharo target (labels telemon.pharo.path, .format, .scheme and .network
#   ## are optional), tagged container_name, for as long as it runs.
#   discover_pharo = false
#
#   ## An engine behind TLS (tcp://host:2376, as with DOCKER_TLS_VERIFY): the
#   ## CA that signed its certificate, telemon's client certificate and key.
#   ## Setting any of these speaks TLS to a tcp:// endpoint:
#   ##   tls_ca = "/etc/telemon/docker-ca.pem"
#   ##   tls_cert = "/etc/telemon/docker-cert.pem"
#   ##   tls_key = "/etc/telemon/docker-key.pem"
#   ## and, to trust any certificate (tests only):
#   insecure_skip_verify = false
#
#   ## Tags added to this table's lines.
#   [inputs.docker.tags]
#     engine = "main"
"""
"""This input's part of telemon.example.toml (`telemon config` prints the whole file)."""

REFERENCE = """**`[[inputs.docker]]`** - every container of a Docker (or Podman) engine,
read through the Engine API (no Docker SDK), with the measurements and field
names of Telegraf's `inputs.docker`, so existing dashboards and queries work.

```toml
[[inputs.docker]]
  endpoint = "unix:///var/run/docker.sock"   # or tcp://host:2375, http(s)://...; "ENV"
                                             # or left out: $DOCKER_HOST if set
  # container_name_include = ["pharo-*"]     # globs; empty = all
  # container_name_exclude = []
  # container_state_include = []             # empty (and no exclude) = running only
  # container_state_exclude = []
  # docker_label_include = []                # labels that become tags; empty = all
  # docker_label_exclude = []
  # perdevice_include = ["cpu", "network"]   # points per cpu, interface, "blkio" device
  # total_include = ["cpu", "blkio", "network"]
  # max_body_size = 16777216                 # bytes; a larger answer is an error
  discover_pharo = true                      # poll containers labelled telemon.pharo.port
  # tls_ca = "ca.pem"                        # a tcp://host:2376 engine with TLS:
  # tls_cert = "cert.pem"
  # tls_key = "key.pem"
  # insecure_skip_verify = false             # tests only: trust any certificate
```

| Measurement | Tags (besides `engine_host`, `server_version`) | Fields |
|---|---|---|
| `docker` | - | `n_containers`, `n_containers_running`/`_stopped`/`_paused`, `n_images`, `n_cpus`, `memory_total`, ... |
| `docker_container_mem` | `container_name`, `container_image`, `container_version`, `container_status`, labels | `usage`, `limit`, `max_usage`, **`working_set`** (usage minus inactive file cache: the MEM USAGE of `docker stats`, cgroup v1 and v2), `usage_percent` (of working set / limit), the raw `memory_stats.stats` values (`cache`, `rss`, `total_inactive_file`, ... on v1; `anon`, `file`, `inactive_file`, ... on v2), `container_id` |
| `docker_container_cpu` | the same + `cpu=cpu-total` (and `cpu0`, `cpu1`, ... on v1) | `usage_percent` (as `docker stats`: 100 = one core), `usage_total`, `usage_in_usermode`, `usage_in_kernelmode`, `usage_system`, `throttling_*` |
| `docker_container_net` | + `network=eth0` ... and `network=total` | `rx_bytes`, `tx_bytes`, `rx_packets`, ... |
| `docker_container_blkio` | + `device=total` (per `major:minor` with `perdevice_include = ["blkio"]`) | `io_service_bytes_recursive_read`/`_write`, ... |
| `docker_container_status` | the same | `oomkilled`, `pid`, `exitcode`, `restart_count`, `started_at`, `finished_at`, `uptime_ns` |
| `docker_container_health` | the same (containers with a HEALTHCHECK) | `health_status`, `failing_streak` |

How it reads: `/_ping` negotiates the API version, then versioned paths
(1.41 or newer where the engine has it) so that stats can be asked for with
`one-shot=true` - one answer at once instead of the daemon's two samples a
second apart. CPU % is computed from telemon's own previous sample of each
container (the first poll of a container has none, so no `usage_percent`);
a counter that went backwards (the container restarted) skips one value
rather than writing a wrong one. Containers are read concurrently
(`max_concurrency`, default 64), each inspect + stats within
`stats_timeout` (3 s, shorter than the poll's `timeout`, so a slow
container is skipped rather than failing the poll). Differences from
Telegraf, on purpose: memory keeps the
raw `usage` and adds `working_set` (Telegraf subtracts the whole page cache
on cgroup v1, which `docker stats` does not); `usage_percent` is left out
rather than written as 0 when it cannot be known; per-interface network
points are on by default. Podman's compatible API is detected (`/_ping`'s
`Libpod-API-Version`): its CPU % is computed from elapsed time, as its
host counter is not Docker's.

A container that stops or is removed during a poll is simply absent from
it. A missing socket, a refused permission (`permission denied on
/var/run/docker.sock: run telemon in the docker group ...`) or something
that is not an engine marks the input down with that one line; every other
input keeps serving. A container that times out is skipped and counted in
`telemon_input` `errors`.

**Pharo containers found by label.** With `discover_pharo = true`, every
running container labelled `telemon.pharo.port` (and passing
`container_name_include`/`container_name_exclude`) is polled as a
`[[inputs.pharo]]` target, tagged `container_name` and `instance` (the
container's name), and dropped when the container goes away - the way
caddy-docker-proxy configures itself from labels:

```yaml
services:
  blog:
    image: my-pharo-app
    labels:
      telemon.pharo.port: "8080"          # required
      telemon.pharo.path: "/metrics"      # default /metrics
      telemon.pharo.format: "auto"        # influx, json, labels, parameters, report
      telemon.pharo.scheme: "http"        # or https
      # telemon.pharo.network: "backend"  # which network's address to use
```

The address is the container's IP on the named (else the first) network,
`127.0.0.1` for a container on the host network, or its published port on
the host when it has no address telemon can use. A bad label is a one-line
reason on the docker input (`container blog: label telemon.pharo.port='http'
is not a port number`); the other containers are still polled. The pharo
lines join the container's own: `container_name` is the same tag on both.
"""  # noqa: E501 - a markdown table row is one line
"""This input's part of the README's input reference (markdown)."""

COUNTER_FIELDS: tuple[str, ...] = (r"(rx|tx)_(bytes|packets|errors|dropped)",)
"""Patterns of this input's cumulative field names (in any measurement, as they always were)."""

MEASUREMENT_COUNTERS: dict[str, tuple[str, ...]] = {
    "docker_container_cpu": (
        r"usage_(total|in_usermode|in_kernelmode|system)|throttling_(throttled_)?periods",
        r"throttling_throttled_time",
    ),
    "docker_container_mem": (r"(total_)?(pgfault|pgmajfault|pgpgin|pgpgout)|fail_count",),
    "docker_container_blkio": (
        r"io_(service_bytes|serviced|service_time|merged)_recursive_\w+|io_wait_time_\w+",
        r"io_time_recursive|sectors_recursive",
    ),
    "docker_container_status": (r"restart_count",),
}
"""Cumulative fields of this input's own measurements only (Telegraf's `cpu` input has a
`usage_system` gauge, for one)."""
