"""The HTTP application: /metrics, methods, gzip, auth, /healthz, the index page and TLS."""

from __future__ import annotations

import asyncio
import base64
import gzip
import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import WAIT_S, FakeTarget, basic_auth, make_certificate, wait_until, without_self_line

from telemon.agent import Agent
from telemon.config import ConfigError, parse_config
from telemon.inputs.base import InputError, Target
from telemon.server import AGENT_KEY, create_app

CONTENT_TYPE = "text/plain; charset=utf-8"


def agent_for(*entries: tuple[str, Target], **http: Any) -> Agent:
    """An agent over (input name, target) pairs, polled hourly (once at start)."""
    return Agent(config_for(**http), targets=entries)


def config_for(**http: Any):
    """A config with no configured inputs, an hourly interval and the given `[http]` keys."""
    return parse_config({"inputs": {}, "agent": {"interval": "1h", "timeout": "1s"}, "http": http})


async def client_for(aiohttp_client, agent: Agent | None = None, **kwargs: Any):
    """A test client for an app over `agent`, once every target was collected."""
    http = kwargs.pop("http", {})
    agent = agent or agent_for(("fake", FakeTarget()), **http)
    client = await aiohttp_client(create_app(agent.config, agent=agent), **kwargs)
    await wait_until(lambda: all(s.health.up is not None for s in agent.collector.states))
    return client


async def test_get_metrics_serves_line_protocol(aiohttp_client) -> None:
    """GET /metrics answers 200 text/plain UTF-8 with the targets, their status and self lines."""
    client = await client_for(aiohttp_client)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    text = await resp.text()
    assert re.search(r"^fake,n=0 value=1i,calls=1i \d+$", text, re.M)
    assert re.search(r"^telemon_input,input=fake,target=fake up=1i,errors=0i,", text, re.M)
    assert re.search(r"^telemon scrapes=1i,", text, re.M)
    assert text.endswith("\n")


async def test_head_metrics_has_headers_but_no_body(aiohttp_client) -> None:
    """HEAD /metrics answers like GET without a body."""
    client = await client_for(aiohttp_client)
    resp = await client.head("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    assert await resp.read() == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_not_allowed(aiohttp_client, method: str) -> None:
    """Methods other than GET and HEAD answer 405 with an Allow header naming GET."""
    client = await client_for(aiohttp_client)
    resp = await client.request(method, "/metrics")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert "POST" not in resp.headers["Allow"]


async def test_custom_metrics_path(aiohttp_client) -> None:
    """`http.path` moves the endpoint; the default path is then not served."""
    client = await client_for(aiohttp_client, http={"path": "/custom/lines"})
    assert (await client.get("/custom/lines")).status == 200
    assert (await client.get("/metrics")).status == 404


async def test_gzip_when_accepted(aiohttp_client) -> None:
    """With Accept-Encoding: gzip the body is gzipped and decodes to the plain body."""
    agent = agent_for(("fake", FakeTarget(count=60)))
    client = await client_for(aiohttp_client, agent, auto_decompress=False)

    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    plain_body = await plain.read()
    assert len(plain_body) > 2048

    zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.status == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Content-Type"] == CONTENT_TYPE
    assert "Accept-Encoding" in zipped.headers.get("Vary", "")
    raw = await zipped.read()
    assert len(raw) < len(plain_body)
    assert without_self_line(gzip.decompress(raw)) == without_self_line(plain_body)


@pytest.mark.parametrize(
    "accept", [None, "identity", "deflate", "br", "gzip;q=0", "gzip; q=0.0", "*;q=0"]
)
async def test_no_gzip_unless_accepted(aiohttp_client, accept: str | None) -> None:
    """Without an Accept-Encoding that allows gzip, the body is sent as is."""
    agent = agent_for(("fake", FakeTarget(count=60)))
    client = await client_for(
        aiohttp_client, agent, auto_decompress=False, skip_auto_headers=["Accept-Encoding"]
    )
    headers = {} if accept is None else {"Accept-Encoding": accept}
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200
    assert "Content-Encoding" not in resp.headers
    assert (await resp.read()).startswith(b"fake,n=0 ")


@pytest.mark.parametrize(
    "accept", ["GZIP", "deflate, gzip", "*", "gzip;q=0.5", "identity, *;q=0.1", "*;q=0, gzip"]
)
async def test_gzip_accept_encoding_variants(aiohttp_client, accept: str) -> None:
    """Case, lists, wildcards, non-zero q-values and gzip named beside `*;q=0` allow gzip."""
    agent = agent_for(("fake", FakeTarget(count=60)))
    client = await client_for(aiohttp_client, agent, auto_decompress=False)
    resp = await client.get("/metrics", headers={"Accept-Encoding": accept})
    assert resp.headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(await resp.read()).startswith(b"fake,n=0 ")


async def test_gzip_can_be_disabled(aiohttp_client) -> None:
    """`http.gzip = false` never compresses."""
    agent = agent_for(("fake", FakeTarget(count=60)), gzip=False)
    client = await client_for(aiohttp_client, agent, auto_decompress=False)
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in resp.headers
    assert (await resp.read()).startswith(b"fake,n=0 ")


async def test_gzip_response_decompressed_by_client(aiohttp_client) -> None:
    """A normal client (auto-decompress) reads the gzipped body as the plain text."""
    agent = agent_for(("fake", FakeTarget(count=60)))
    client = await client_for(aiohttp_client, agent)
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert resp.headers["Content-Encoding"] == "gzip"
    assert len(re.findall(r"^fake,", await resp.text(), re.M)) == 60


BASIC = {"username": "scraper", "password": "s3cret:with colon"}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic_auth("intruder", "s3cret:with colon"),
        basic_auth("scraper", "wrong"),
        basic_auth("scraper", "s3cret:with colo"),
        basic_auth("scraper", ""),
        "Basic !!!not-base64!!!",
        "Basic c2NyYXBlcg",  # truncated base64
        "Basic",
        "Bearer s3cret:with colon",
        "Digest " + base64.b64encode(b"scraper:s3cret:with colon").decode(),
    ],
)
async def test_basic_auth_rejects(aiohttp_client, authorization: str | None) -> None:
    """Missing, wrong or malformed basic credentials get 401 with a Basic challenge."""
    client = await client_for(aiohttp_client, http=BASIC)
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in ("/metrics", "/"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
        assert b"fake" not in await resp.read()


async def test_basic_auth_accepts_right_credentials(aiohttp_client) -> None:
    """The configured username and password get the metrics and the index page."""
    client = await client_for(aiohttp_client, http=BASIC)
    auth = {"Authorization": basic_auth("scraper", "s3cret:with colon")}
    resp = await client.get("/metrics", headers=auth)
    assert resp.status == 200
    assert b"fake,n=0 " in await resp.read()
    assert (await client.get("/", headers=auth)).status == 200
    lower = {"Authorization": "basic " + basic_auth("scraper", "s3cret:with colon")[6:]}
    assert (await client.get("/metrics", headers=lower)).status == 200


async def test_basic_auth_password_file(aiohttp_client, tmp_path: Path) -> None:
    """`password_file` supplies the password (surrounding whitespace stripped)."""
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    client = await client_for(aiohttp_client, http={"username": "u", "password_file": str(secret)})
    ok = await client.get("/metrics", headers={"Authorization": basic_auth("u", "from-file")})
    assert ok.status == 200
    bad = await client.get("/metrics", headers={"Authorization": basic_auth("u", "from-file\n")})
    assert bad.status == 401


TOKEN = {"token": "tok-0123456789"}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer tok-012345678",
        "Bearer tok-0123456789x",
        "Token tok-0123456789",
        "tok-0123456789",
        basic_auth("tok-0123456789", ""),
    ],
)
async def test_bearer_token_rejects(aiohttp_client, authorization: str | None) -> None:
    """Missing or wrong bearer tokens get 401 with a Bearer challenge."""
    client = await client_for(aiohttp_client, http=TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")


async def test_undecodable_authorization_bytes_get_401(aiohttp_client, caplog) -> None:
    """Bytes that are not UTF-8 in the header: 401 like any wrong token, no 500, no traceback."""
    client = await client_for(aiohttp_client, http=TOKEN)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n"
    )
    status_line = (await reader.read(4096)).split(b"\r\n", 1)[0]
    writer.close()
    assert status_line == b"HTTP/1.1 401 Unauthorized"
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("authorization", ["Bearer tok-0123456789", "bearer  tok-0123456789 "])
async def test_bearer_token_accepts_right_token(aiohttp_client, authorization: str) -> None:
    """The configured token opens /metrics (scheme case-insensitive, spaces tolerated)."""
    client = await client_for(aiohttp_client, http=TOKEN)
    resp = await client.get("/metrics", headers={"Authorization": authorization})
    assert resp.status == 200
    assert b"fake,n=0 " in await resp.read()


async def test_bearer_token_file(aiohttp_client, tmp_path: Path) -> None:
    """`token_file` supplies the token."""
    secret = tmp_path / "token"
    secret.write_text("  file-token \n")
    client = await client_for(aiohttp_client, http={"token_file": str(secret)})
    ok = await client.get("/metrics", headers={"Authorization": "Bearer file-token"})
    assert ok.status == 200
    bad = await client.get("/metrics", headers={"Authorization": "Bearer tok-0123456789"})
    assert bad.status == 401


async def test_basic_and_bearer_together_either_works(aiohttp_client) -> None:
    """With both configured, valid basic credentials or a valid token each get in."""
    client = await client_for(aiohttp_client, http={**BASIC, **TOKEN})
    right = {"Authorization": basic_auth("scraper", "s3cret:with colon")}
    by_basic = await client.get("/metrics", headers=right)
    assert by_basic.status == 200
    by_token = await client.get("/metrics", headers={"Authorization": "Bearer tok-0123456789"})
    assert by_token.status == 200
    for header in (None, basic_auth("scraper", "no"), "Bearer no", "Bearer s3cret:with colon"):
        resp = await client.get("/metrics", headers={"Authorization": header} if header else {})
        assert resp.status == 401
        assert "WWW-Authenticate" in resp.headers


@pytest.mark.parametrize(
    "http",
    [{"username": "", "password": "pw"}, {"token": ""}],
    ids=["empty-username", "empty-token"],
)
async def test_empty_credentials_never_leave_the_endpoint_open(aiohttp_client, http) -> None:
    """An empty username or token is rejected by the config or still requires auth."""
    try:
        config = config_for(**http)
    except ConfigError:
        return
    app = create_app(config, agent=Agent(config, targets=[("fake", FakeTarget())]))
    client = await aiohttp_client(app)
    resp = await client.get("/metrics")
    assert resp.status == 401, f"{http} configured, yet /metrics is served without credentials"


@pytest.mark.parametrize("http", [{}, BASIC, TOKEN, {**BASIC, **TOKEN}])
async def test_healthz_is_open(aiohttp_client, http: dict[str, str]) -> None:
    """/healthz answers 200 without credentials whatever auth is configured."""
    client = await client_for(aiohttp_client, http=http)
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.text() == "ok\n"


async def test_no_auth_configured_is_open(aiohttp_client) -> None:
    """Without credentials configured every endpoint is open."""
    client = await client_for(aiohttp_client)
    for path in ("/metrics", "/", "/healthz"):
        assert (await client.get(path)).status == 200


async def test_index_lists_each_target_and_its_state(aiohttp_client) -> None:
    """The index shows each target's state, age of last success, interval, errors and last
    error, with links (the page itself: tests/test_status_page.py)."""
    good = FakeTarget("db-primary")
    bad = FakeTarget("db-replica")
    bad.error = InputError("connection refused")
    waiting = FakeTarget("cold-start")
    waiting.gate = asyncio.Event()
    agent = agent_for(("pharo", good), ("vm", bad), ("later", waiting))
    app = create_app(agent.config, agent=agent)
    client = await aiohttp_client(app)
    await wait_until(
        lambda: (
            agent.collector.states[0].health.up is True
            and agent.collector.states[1].health.up is False
        )
    )

    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = await resp.text()
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    cells = {r[2]: r for r in (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows) if r}
    assert cells["db-primary"][0] == "pharo"
    assert cells["db-primary"][3] == "up"
    assert re.fullmatch(r"\d+ s ago", cells["db-primary"][4])
    assert cells["db-primary"][5] == "1 h"  # the interval
    assert cells["db-replica"][:4] == ["vm", "", "db-replica", "down"]
    assert cells["db-replica"][4] == "never"
    assert cells["db-replica"][6] == "1"
    assert cells["db-replica"][7] == "0"  # values dropped
    assert cells["db-replica"][8] == "connection refused"
    assert cells["cold-start"][3] == "pending"
    assert '<a href="/metrics">' in page and '<a href="/healthz">' in page
    assert '<a href="/metrics?format=prometheus">' in page
    waiting.gate.set()


async def test_index_escapes_hostile_names_and_errors(aiohttp_client) -> None:
    """Target names, input names and error messages are HTML-escaped on the index page."""
    hostile = FakeTarget('<script>alert("t")</script>')
    hostile.error = InputError('<img src=x onerror="alert(1)">&')
    agent = agent_for(("<b>input</b>", hostile))
    client = await client_for(aiohttp_client, agent)
    page = await (await client.get("/")).text()
    assert "<script>" not in page
    assert "<img" not in page
    assert "<b>input" not in page
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert "&lt;b&gt;input&lt;/b&gt;" in page


async def test_index_without_inputs(aiohttp_client) -> None:
    """With no targets the index says so."""
    client = await client_for(aiohttp_client, agent_for())
    page = await (await client.get("/")).text()
    assert "no inputs configured" in page


async def test_scrape_does_not_wait_for_a_stuck_target(aiohttp_client) -> None:
    """A target whose collection hangs does not hold up GET /metrics."""
    stuck = FakeTarget("stuck", measurement="stuck")
    stuck.gate = asyncio.Event()
    agent = agent_for(("fake", FakeTarget()), ("other", stuck))
    app = create_app(agent.config, agent=agent)
    client = await aiohttp_client(app)
    await wait_until(lambda: agent.collector.states[0].health.up is True and stuck.calls == 1)
    resp = await asyncio.wait_for(client.get("/metrics"), WAIT_S)  # a hang guard only
    text = await resp.text()
    assert "fake,n=0 " in text
    assert "stuck" not in text
    stuck.gate.set()


async def test_app_starts_and_stops_collection(aiohttp_client) -> None:
    """Collection starts with the app and its tasks are stopped when the app shuts down."""
    target = FakeTarget()
    agent = agent_for(("fake", target))
    app = create_app(agent.config, agent=agent)
    client = await aiohttp_client(app)
    assert app[AGENT_KEY] is agent
    await wait_until(lambda: target.calls == 1)
    assert len(agent.collector._tasks) == 1
    await client.close()
    assert not agent.collector._tasks


async def test_tls_serves_metrics_over_https(tmp_path: Path) -> None:
    """With tls_cert and tls_key the app serves HTTPS verifiable against that certificate."""
    cert, key = make_certificate(tmp_path)
    config = parse_config(
        {"inputs": {}, "http": {"tls_cert": str(cert), "tls_key": str(key), **TOKEN}}
    )
    server_context = config.http.ssl_context()
    assert isinstance(server_context, ssl.SSLContext)
    agent = agent_for(("fake", FakeTarget()))
    runner = web.AppRunner(create_app(config, agent=agent))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        port = runner.addresses[0][1]
        await wait_until(lambda: agent.collector.states[0].health.up is True)
        trusted = ssl.create_default_context(cafile=str(cert))
        headers = {"Authorization": "Bearer tok-0123456789"}
        async with aiohttp.ClientSession() as session:
            for host in ("localhost", "127.0.0.1"):
                url = f"https://{host}:{port}/metrics"
                async with session.get(url, ssl=trusted, headers=headers) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"] == CONTENT_TYPE
                    assert "fake,n=0 " in await resp.text()
            async with session.get(f"https://127.0.0.1:{port}/healthz", ssl=trusted) as resp:
                assert resp.status == 200
            untrusted = ssl.create_default_context()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://127.0.0.1:{port}/healthz", ssl=untrusted)
    finally:
        await runner.cleanup()


def test_no_tls_context_without_certificate() -> None:
    """Without tls_cert/tls_key there is no TLS context."""
    assert config_for().http.ssl_context() is None


def test_tls_needs_both_files(tmp_path: Path) -> None:
    """A certificate without a key (or the reverse) is a config error."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    with pytest.raises(ConfigError, match="TLS needs both"):
        config_for(tls_cert=str(cert))
    with pytest.raises(ConfigError, match="TLS needs both"):
        config_for(tls_key=str(key))
