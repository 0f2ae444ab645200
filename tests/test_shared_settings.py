"""Settings several tables share, written once: secrets, client TLS, URLs.

Every table that has `x` and `x_file` refuses both alike and reads the file
once, when the config is checked; every TLS context is built once, then only
handed out (the files may be gone by the time it is used); every URL key
refuses a port outside 1..65535 with one line naming the key.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import make_certificate

from telemon import schema
from telemon.cli import main
from telemon.config import ConfigError, parse_config
from telemon.inputs.base import InputContext
from telemon.inputs.docker import DockerTarget
from telemon.outputs.influxdb import InfluxDBSender

PORT_REASON = "the port is not a number from 1 to 65535"


def nested(path: str, table: dict[str, Any]) -> dict[str, Any]:
    """The config document holding `table` at `path` (a list of one for `inputs.*`, `outputs.*`)."""
    first, _, rest = path.partition(".")
    return {first: {rest: [table]}} if rest else {first: table}


def where(path: str) -> str:
    """Where the error of a table at `path` is reported."""
    return f"{path}.0" if "." in path else path


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.details


# Every table with a secret and its file: (path, key, the other keys it needs).
SECRET_TABLES = [
    pytest.param("http", "password", {"username": "u"}, id="http-password"),
    pytest.param("http", "token", {}, id="http-token"),
    pytest.param("inputs.pharo", "token", {"urls": ["http://vm/"]}, id="pharo-token"),
    pytest.param("outputs.influxdb", "password", {"username": "u"}, id="influxdb-password"),
    pytest.param("outputs.influxdb_v2", "token", {"bucket": "b"}, id="influxdb_v2-token"),
]


@pytest.mark.parametrize(("path", "key", "table"), SECRET_TABLES)
def test_a_secret_and_its_file_together_are_refused_alike(
    path: str, key: str, table: dict[str, Any], tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    data = nested(path, {**table, key: "inline", f"{key}_file": str(secret)})
    assert errors(data) == [(where(path), f"set {key} or {key}_file, not both")]


@pytest.mark.parametrize(("path", "key", "table"), SECRET_TABLES)
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(None, "cannot read {file}: No such file or directory", id="missing"),
        pytest.param(b" \n\n", "{file} is empty", id="empty"),
        pytest.param(b"\xff\xfe\x00", "{file} is not UTF-8 text", id="binary"),
    ],
)
def test_a_secret_file_that_cannot_be_used_is_one_line_naming_the_key(
    path: str,
    key: str,
    table: dict[str, Any],
    content: bytes | None,
    reason: str,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret"
    if content is not None:
        secret.write_bytes(content)
    data = nested(path, {**table, f"{key}_file": str(secret)})
    assert errors(data) == [(where(path), f"{key}_file: " + reason.format(file=secret))]


def test_secret_files_are_read_once_when_the_config_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read by the check, kept, handed out: never read again (the files may be gone)."""
    reads: list[Path] = []
    real = schema.read_secret

    def counting(path: Path, key: str) -> Any:
        reads.append(path)
        return real(path, key)

    monkeypatch.setattr(schema, "read_secret", counting)
    files = {name: tmp_path / name for name in ("http-pw", "http-tok", "pharo", "v1", "v2")}
    for name, file in files.items():
        file.write_text(f"  {name}-secret \n")
    config = parse_config(
        {
            "http": {"username": "u", "password_file": str(files["http-pw"]),
                     "token_file": str(files["http-tok"])},
            "inputs": {"pharo": [{"urls": ["http://vm/"], "token_file": str(files["pharo"])}]},
            "outputs": {
                "influxdb": [{"username": "u", "password_file": str(files["v1"])}],
                "influxdb_v2": [{"bucket": "b", "token_file": str(files["v2"])}],
            },
        }
    )  # fmt: skip
    assert sorted(reads) == sorted(files.values())
    for file in files.values():
        file.unlink()
    [pharo] = config.inputs.pharo
    [target] = pharo.build(InputContext())
    assert target.request.headers["Authorization"] == "Bearer pharo-secret"
    assert (config.http.basic_password, config.http.bearer_token) == (
        "http-pw-secret",
        "http-tok-secret",
    )
    assert config.outputs.influxdb[0].basic_password == "v1-secret"
    assert config.outputs.influxdb_v2[0].auth_token == "v2-secret"
    assert len(reads) == len(files)


# --- URLs ------------------------------------------------------------------------------

# Every key holding a URL: (path, table with {url} where the URL goes, where the error is).
URL_KEYS = [
    pytest.param("inputs.pharo", {"urls": ["{url}"]}, "inputs.pharo.0.urls.0", id="pharo"),
    pytest.param("outputs.influxdb", {"urls": ["{url}"]}, "outputs.influxdb.0.urls",
                 id="influxdb"),
    pytest.param("outputs.influxdb_v2", {"url": "{url}", "bucket": "b"},
                 "outputs.influxdb_v2.0.url", id="influxdb_v2"),
]  # fmt: skip


def with_url(table: dict[str, Any], url: str) -> dict[str, Any]:
    return {k: [url] if v == ["{url}"] else url if v == "{url}" else v for k, v in table.items()}


@pytest.mark.parametrize(("path", "table", "key"), URL_KEYS)
@pytest.mark.parametrize(
    "url", ["http://x:99999", "http://x:0/", "https://x:65536/a", "http://x:http/"]
)
def test_a_port_out_of_range_is_refused_naming_the_key(
    path: str, table: dict[str, Any], key: str, url: str
) -> None:
    assert errors(nested(path, with_url(table, url))) == [(key, f"{url!r}: {PORT_REASON}")]


@pytest.mark.parametrize(("path", "table", "key"), URL_KEYS)
@pytest.mark.parametrize("url", ["ftp://x/", "localhost:8086", "http://", "http://:8086/"])
def test_a_url_that_is_not_http_with_a_host_is_refused_alike(
    path: str, table: dict[str, Any], key: str, url: str
) -> None:
    message = f"{url!r} is not an http:// or https:// URL"
    assert errors(nested(path, with_url(table, url))) == [(key, message)]


@pytest.mark.parametrize(("path", "table", "key"), URL_KEYS)
def test_a_bad_url_message_hides_the_password(path: str, table: dict[str, Any], key: str) -> None:
    [(_, message)] = errors(nested(path, with_url(table, "http://bob:s3cret@x:99999/")))
    assert message == f"'http://x:99999/': {PORT_REASON}"


@pytest.mark.parametrize(("path", "table", "key"), URL_KEYS)
def test_ports_1_and_65535_are_accepted(path: str, table: dict[str, Any], key: str) -> None:
    for url in ("http://x:1/", "https://[::1]:65535/", "http://x/"):
        parse_config(nested(path, with_url(table, url)))


def test_a_docker_endpoint_port_out_of_range_is_refused() -> None:
    data = {"inputs": {"docker": [{"endpoint": "tcp://h:99999"}]}}
    assert errors(data) == [("inputs.docker.0.endpoint", f"'tcp://h:99999': {PORT_REASON}")]


def test_check_refuses_an_output_port_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "telemon.toml"
    path.write_text('[[outputs.influxdb]]\nurls = ["http://x:99999"]\n')
    assert main(["check", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}: outputs.influxdb.0.urls: 'http://x:99999': {PORT_REASON}\n"
    )


# --- client and server TLS ---------------------------------------------------------------

# Every table with client TLS settings: (path, its other keys).
TLS_TABLES = [
    pytest.param("inputs.pharo", {"urls": ["https://vm/"]}, id="pharo"),
    pytest.param("inputs.docker", {"endpoint": "tcp://h:2376"}, id="docker"),
    pytest.param("outputs.influxdb", {}, id="influxdb"),
    pytest.param("outputs.influxdb_v2", {"bucket": "b"}, id="influxdb_v2"),
]


@pytest.mark.parametrize(("path", "table"), TLS_TABLES)
def test_a_tls_ca_that_cannot_be_used_is_refused_alike(
    path: str, table: dict[str, Any], tmp_path: Path
) -> None:
    missing, junk = tmp_path / "missing.pem", tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert errors(nested(path, {**table, "tls_ca": str(missing)})) == [
        (where(path), f"tls_ca: cannot read {missing}")
    ]
    assert errors(nested(path, {**table, "tls_ca": str(junk)})) == [
        (where(path), f"tls_ca: cannot use {junk}: no PEM certificate in the file")
    ]


def test_a_docker_client_key_that_cannot_be_used_names_both_keys(tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = make_certificate(other)
    table = {"endpoint": "tcp://h:2376", "tls_cert": str(cert), "tls_key": str(other_key)}
    assert errors({"inputs": {"docker": [table]}}) == [
        ("inputs.docker.0", "tls_cert, tls_key: cannot use them: "
                            "the key does not belong to the certificate")
    ]  # fmt: skip


@pytest.fixture
def count_contexts(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Every TLS context created from now on."""
    made: list[ssl.SSLContext] = []
    real: Callable[..., ssl.SSLContext] = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return made


async def test_each_tls_context_is_built_once_when_the_config_is_checked(
    tmp_path: Path, count_contexts: list[ssl.SSLContext]
) -> None:
    cert, key = make_certificate(tmp_path)
    ca = {"tls_ca": str(cert)}
    config = parse_config(
        {
            "http": {"tls_cert": str(cert), "tls_key": str(key)},
            "inputs": {
                "pharo": [{"urls": ["https://vm/"], **ca}],
                "docker": [{"endpoint": "tcp://h:2376", **ca}],
            },
            "outputs": {"influxdb": [ca], "influxdb_v2": [{"bucket": "b", **ca}]},
        }
    )
    built = list(count_contexts)
    assert len(built) == 5  # one per table, no more
    [pharo], [docker] = config.inputs.pharo, config.inputs.docker
    context = InputContext()
    [pharo_target] = pharo.build(context)
    docker_target = DockerTarget(docker, context)
    await docker_target.aclose()
    handed_out = [
        config.http.ssl_context(),
        config.http.ssl_context(),
        pharo.tls_context(),
        pharo_target.request.ssl,
        docker.tls_context(),
        config.outputs.influxdb[0].tls_context(),
        config.outputs.influxdb_v2[0].tls_context(),
    ]
    assert count_contexts == built  # building the runtime made none
    assert {id(c) for c in handed_out} == {id(c) for c in built}


def test_no_tls_settings_no_context(count_contexts: list[ssl.SSLContext]) -> None:
    """Without settings the system's defaults apply: nothing is built."""
    config = parse_config(
        {
            "inputs": {"pharo": [{"urls": ["https://vm/"]}], "docker": [{}]},
            "outputs": {"influxdb": [{}], "influxdb_v2": [{"bucket": "b"}]},
        }
    )
    assert count_contexts == []
    assert config.http.ssl_context() is None
    assert config.inputs.pharo[0].tls_context() is None
    assert config.inputs.docker[0].tls_context() is None
    assert config.outputs.influxdb[0].tls_context() is None


def test_insecure_skip_verify_alone_gives_a_context_that_trusts_anything() -> None:
    for path, table in (("inputs.pharo", {"urls": ["https://vm/"]}), ("outputs.influxdb", {})):
        config = parse_config(nested(path, {**table, "insecure_skip_verify": True}))
        [model] = config.inputs.pharo or config.outputs.influxdb
        context = model.tls_context()
        assert context is not None and context.verify_mode is ssl.CERT_NONE
        assert not context.check_hostname


async def https_server(
    aiohttp_server: Any, tmp_path: Path, body: str
) -> tuple[str, Path, list[str]]:
    """An HTTPS server answering `body` to GET and 204 to POST; its URL, its certificate."""
    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    posted: list[str] = []

    async def get(_: web.Request) -> web.Response:
        return web.Response(text=body)

    async def post(request: web.Request) -> web.Response:
        posted.append(await request.text())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/stats", get)
    app.router.add_post("/write", post)
    server = await aiohttp_server(app, ssl=context)
    return f"https://127.0.0.1:{server.port}", cert, posted


async def test_pharo_and_outputs_work_after_the_ca_file_is_gone(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """The runtime uses the context the check built, not the file."""
    url, cert, posted = await https_server(aiohttp_server, tmp_path, "pharo uptime=5i\n")
    config = parse_config(
        {
            "inputs": {"pharo": [{"urls": [url + "/stats"], "format": "influx",
                                  "tls_ca": str(cert)}]},
            "outputs": {"influxdb": [{"urls": [url], "tls_ca": str(cert)}]},
        }
    )  # fmt: skip
    cert.unlink()
    context = InputContext()
    [target] = config.inputs.pharo[0].build(context)
    try:
        [metric] = await target.collect(1)
    finally:
        await context.aclose()
    assert metric.fields["uptime"] == 5
    v1 = config.outputs.influxdb[0]
    sender = InfluxDBSender(url, v1.database, create_database=False, tls=v1.tls_context())
    try:
        await sender.send(b"m v=1i 1\n")
    finally:
        await sender.aclose()
    assert posted == ["m v=1i 1\n"]


async def test_the_server_context_serves_after_the_files_are_gone(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    config = parse_config({"http": {"tls_cert": str(cert), "tls_key": str(key)}})
    trust = ssl.create_default_context(cafile=str(cert))
    key.unlink()
    cert.unlink()

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=config.http.ssl_context())
        await site.start()
        port = runner.addresses[0][1]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"https://127.0.0.1:{port}/", ssl=trust) as response,
        ):
            assert await response.text() == "ok"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@h:1/m?vm=a&token=xyz", "http://h:1/m?vm=a&token=***"),
        ("https://h/stats?api_key=k&x=1#top", "https://h/stats?api_key=***&x=1#top"),
        ("http://h/m?vm=a", "http://h/m?vm=a"),
        ("not a url", "not a url"),
    ],
)
def test_display_url_hides_credentials_in_the_userinfo_and_the_query(url: str, shown: str) -> None:
    from telemon.schema import display_url

    assert display_url(url) == shown
