"""The `telemon` command: serve, once, check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from telemon import __version__
from telemon.agent import Agent
from telemon.config import (
    Config,
    ConfigError,
    default_config_path,
    listen_address,
    parse_config,
    read_config_data,
)
from telemon.logs import setup_logging

__all__ = ["main"]

_log = logging.getLogger("telemon")
_COMMANDS = ("serve", "once", "check", "simulate", "demo", "config")
EXIT_FAILED, EXIT_CONFIG = 1, 2
_SIMULATED_FORMATS = ("influx", "json", "labels", "parameters", "report")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemon",
        description="Serve Pharo VM, container and process metrics as InfluxDB line protocol.",
    )
    parser.add_argument("--version", action="version", version=f"telemon {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="collect and serve metrics (the default)")
    once = commands.add_parser("once", help="collect once, print line protocol, exit")
    check = commands.add_parser("check", help="validate the configuration and exit")
    for sub in (serve, once, check):
        sub.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument("--listen", metavar="HOST:PORT", help="overrides http.listen")
    for sub in (serve, once):  # `once` shows what `serve` with the same flags would serve
        sub.add_argument(
            "--tag", action="append", default=[], metavar="KEY=VALUE",
            help="a global tag (repeatable)",
        )
    demo = commands.add_parser("demo", help="a simulated Pharo VM scraped by telemon")
    demo.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    sample = commands.add_parser("config", help="print a sample configuration file, every option")
    # For maintainers: rewrite the input reference of the README named.
    sample.add_argument("--readme", metavar="FILE", help=argparse.SUPPRESS)
    simulate = commands.add_parser("simulate", help="serve a simulated Pharo VM's statistics")
    simulate.add_argument("--listen", default="127.0.0.1:8079", metavar="HOST:PORT")
    simulate.add_argument("--format", choices=_SIMULATED_FORMATS, help="what / serves")
    simulate.add_argument("--fault", help="misbehave on every request: hang, slow, 500, ...")
    simulate.add_argument("--vms", type=int, default=1, help="VMs served at /<n>/... (default 1)")
    simulate.add_argument("--seed", type=int, default=1)
    for sub in (serve, demo, simulate):
        sub.add_argument(
            "--log-level", default="info", choices=["debug", "info", "warning", "error"]
        )
        sub.add_argument("--log-format", default="text", choices=["text", "json"])
    return parser


def _load(args: argparse.Namespace) -> Config:
    path = default_config_path(args.config)
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = read_config_data(path)
    if getattr(args, "listen", None):
        _table(data, "http", source)["listen"] = args.listen
    for tag in getattr(args, "tag", []):
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise ConfigError("command line", [("--tag", f"expected KEY=VALUE, got {tag!r}")])
        _table(data, "global_tags", source)[key] = value
    return parse_config(data, source)


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """The table `key` of the document, for a command-line override."""
    table = data.setdefault(key, {})
    # Not a table: validation reports it under its key; the override is moot.
    return table if isinstance(table, dict) else {}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in (*_COMMANDS, "-h", "--help", "--version"):
        args_list.insert(0, "serve")
    args = _parser().parse_args(args_list)
    if args.command == "config":
        return _config(args.readme)
    if args.command in ("simulate", "demo"):
        setup_logging(args.log_level, args.log_format)
        return _simulate(args) if args.command == "simulate" else _demo(args.listen)
    try:
        config = _load(args)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        return 0
    if args.command == "once":
        setup_logging("error")
        return asyncio.run(_once(config))
    setup_logging(args.log_level, args.log_format)
    # Restarting re-runs the process's own command line: only when it is ours.
    status = _serve(config, reload=(lambda: _load(args)) if argv is None else None)
    if status is _RESTART:
        logging.shutdown()
        # The same process (same PID, as Telegraf does on SIGHUP) with the new file.
        os.execv(sys.executable, sys.orig_argv)
    return status


async def _once(config: Config) -> int:
    agent = Agent(config)
    await agent.collect_once()
    failed = False
    for state in agent.collector.states:
        sys.stdout.buffer.write(state.body)
        if not state.health.up:
            failed = True
            print(f"{state.source}: {state.health.last_error}", file=sys.stderr)
    sys.stdout.flush()
    return EXIT_FAILED if failed else 0


def _listen_address(value: str) -> tuple[str, int] | None:
    try:
        return listen_address(value)  # the rule of [http] listen: a bare port is refused
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return None


def _simulate(args: argparse.Namespace) -> int:
    from telemon.simulator.app import run_simulator

    address = _listen_address(args.listen)
    if address is None:
        return EXIT_CONFIG
    try:
        run_simulator(*address, fmt=args.format, fault=args.fault, vms=args.vms, seed=args.seed)
    except ValueError as exc:
        print(f"telemon simulate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        _log.error("cannot listen on %s: %s", args.listen, exc.strerror or exc)
        return EXIT_FAILED
    return 0


def _demo(listen: str) -> int:
    from telemon.demo import demo_app

    address = _listen_address(listen)
    if address is None:
        return EXIT_CONFIG

    def listening(_: str) -> None:  # aiohttp calls it once the socket is bound
        _log.info("telemon demo: Pharo VM lines at http://%s:%d/metrics", *address)

    try:
        web.run_app(demo_app(listen), host=address[0], port=address[1], print=listening,
                    access_log=None)
    except OSError as exc:
        _log.error("cannot listen on %s: %s", listen, exc.strerror or exc)
        return EXIT_FAILED
    return 0


def _config(readme: str | None) -> int:
    """Print the example configuration; with a README, rewrite its input reference instead."""
    from pathlib import Path

    from telemon.docs import example_config, with_inputs_reference

    if readme is None:
        sys.stdout.write(example_config())
        return 0
    path = Path(readme)
    try:
        text = with_inputs_reference(path.read_text(encoding="utf-8"))
        path.write_text(text, encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"telemon config --readme: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


_RESTART = -1  # `_serve`'s status when SIGHUP brought a valid new configuration


def _serve(config: Config, reload: Callable[[], Config] | None = None) -> int:
    from telemon.server import create_app

    host, port = config.http.listen
    context = config.http.ssl_context()  # built once, when the config was checked
    scheme = "https" if context else "http"

    def listening(_: str) -> None:  # aiohttp calls it once the socket is bound
        _log.info("telemon %s serving %s://%s:%d%s", __version__, scheme, host, port,
                  config.http.path)

    app = create_app(config)
    restart: list[bool] = []
    if reload is not None:
        app.on_startup.append(lambda _: _reload_on_sighup(reload, restart))
    try:
        web.run_app(app, host=host, port=port, ssl_context=context, print=listening,
                    access_log=None)
    except OSError as exc:
        _log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return EXIT_FAILED
    return _RESTART if restart else 0


async def _reload_on_sighup(reload: Callable[[], Config], restart: list[bool]) -> None:
    """SIGHUP: check the configuration again; stop to restart with it only when it is valid."""

    def hangup() -> None:
        try:
            reload()
        except ConfigError as exc:
            for line in exc.lines():
                _log.error("SIGHUP: configuration refused, still running the old one: %s", line)
            return
        _log.info("SIGHUP: configuration valid, restarting with it")
        restart.append(True)
        raise web.GracefulExit  # aiohttp's own way out: the app's cleanup runs

    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup)
