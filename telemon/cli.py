"""The `telemon` command: serve, once, check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import errno
import json
import logging
import os
import signal
import socket
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

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
    summary,
)
from telemon.logs import escape_text, setup_logging

__all__ = ["main"]

_log = logging.getLogger("telemon")
_COMMANDS = ("serve", "once", "check", "simulate", "demo", "config", "alerts")
EXIT_FAILED, EXIT_CONFIG = 1, 2
_SIMULATED_FORMATS = ("influx", "json", "labels", "parameters", "report")


_CONFIG_HELP = (
    "TOML configuration file (default: $TELEMON_CONFIG, else ./telemon.toml if it exists,"
    " else the built-in defaults: telemon's own process and Python VM on 127.0.0.1:8080)"
)
_LOG_LEVELS = ("debug", "info", "warning", "error")
_FAULT_HELP = {
    "none": "serve normally (lifts --fault for one request with ?fault=none)",
    "hang": "never answer, until the client gives up",
    "slow": "answer after 2 s (?delay=SECONDS for one request)",
    "500": "answer 500 with an HTML error page, as Zinc does on an unhandled error",
    "truncate": "announce the whole body, send half of it, close the connection",
    "garbage": "random bytes instead of the figures (from --seed)",
    "html": "a login page (text/html) instead of the figures, as a proxy in the way would",
    "huge": "the figures padded to 8 MiB (?size=BYTES for one request)",
    "wrongtype": "the right body with Content-Type text/html",
    "empty": "an empty body",
    "restart": "restart the VM first (counters and uptime start again), then serve normally",
}
_EXIT_STATUS = "exit status: 2 when the configuration (file or options) is refused"
_ONCE_EPILOG = (
    "exit status: 0 when every target answered; 1 when one did not (its error on stderr,"
    " the lines of the others still printed); 2 when the configuration is refused"
)
_CHECK_EPILOG = (
    "On success, one line on stdout: FILE: ok: N inputs (N targets), N outputs (N URLs),"
    " the sink's paths. Otherwise every problem found, one line each on stderr"
    " (FILE: key.path: message), and exit status 2."
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help as written (the fault list keeps its lines), wider option column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemon",
        description="Serve Pharo VM, container and process metrics as InfluxDB line protocol.",
        epilog=textwrap.fill(
            "Without a command, telemon serves. Options go before or after the command:"
            " `telemon -c FILE check` is `telemon check -c FILE` (or `telemon check FILE`)."
            " `telemon COMMAND --help` tells more.", 78,
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"telemon {__version__}",
        help="print telemon's version and exit",
    )
    _config_option(parser)
    _log_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = _command(commands, "serve", "collect and serve metrics (the default command)",
                     _EXIT_STATUS + "; 1 when the address cannot be bound", config=True, logs=True)
    once = _command(commands, "once", "collect once, print the line protocol, exit", _ONCE_EPILOG,
                    config=True)  # fmt: skip
    check = _command(commands, "check", "validate the configuration and exit", _CHECK_EPILOG,
                     config=True)  # fmt: skip
    for sub in (serve, once, check):
        sub.add_argument("file", nargs="?", metavar="FILE", help="the same as -c FILE")
    serve.add_argument(
        "--listen", metavar="HOST:PORT",
        help="address to serve on, overrides [http] listen (default 127.0.0.1:8080;"
        " :PORT is every interface, port 0 any free port)",
    )
    for sub in (serve, once):  # `once` shows what `serve` with the same flags would serve
        sub.add_argument(
            "--tag", action="append", default=[], metavar="KEY=VALUE",
            help="a global tag added to every line, as [global_tags] (repeatable; default none)",
        )
    demo = _command(
        commands, "demo",
        "a simulated fleet of Pharo VMs (one per format, Spur and classic) scraped by telemon",
        "It prints the URLs to open. Stop it with Ctrl-C.", logs=True,
    )
    demo.add_argument(
        "--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
        help="telemon's address (default 127.0.0.1:8080; the simulator takes a free port)",
    )
    sample = _command(commands, "config", "print a sample configuration file, every option")
    # For maintainers: rewrite the input reference of the README named.
    sample.add_argument("--readme", metavar="FILE", help=argparse.SUPPRESS)
    _alerts_options(_command(
        commands, "alerts", "print the Prometheus alert rules for Pharo VMs and telemon",
        "Thresholds, windows and `for` durations are settings (--settings lists them, with"
        " their defaults); alerts/README.md documents each alert. Exit status 2 when a"
        " setting is refused.",
    ))
    _simulate_options(_command(
        commands, "simulate", "serve a simulated Pharo VM's statistics (for tests and demos)",
        "faults (--fault, or ?fault=NAME on one request):\n" + "\n".join(
            f"  {name:<10} {text}" for name, text in _FAULT_HELP.items()
        ), logs=True,
    ))
    return parser


def _command(
    commands: Any, name: str, text: str, epilog: str | None = None,
    *, config: bool = False, logs: bool = False,
) -> argparse.ArgumentParser:
    if epilog is not None and "\n" not in epilog:  # the formatter keeps text as written
        epilog = textwrap.fill(epilog, 78)
    sub: argparse.ArgumentParser = commands.add_parser(
        name, help=text, description=text[:1].upper() + text[1:] + ".", epilog=epilog,
        formatter_class=_Formatter,
    )
    if config:
        _config_option(sub)
    if logs:
        _log_options(sub)
    return sub


# Accepted before and after the command. No parser sets a default (`_parse`
# does): a command's default would overwrite what was given before the command.


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help=_CONFIG_HELP
    )


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=_LOG_LEVELS,
        help="the least severe messages logged, on stderr (default info; debug adds each poll,"
        " scrape and refused request)",
    )
    parser.add_argument(
        "--log-format", default=argparse.SUPPRESS, choices=("text", "json"),
        help="text lines, or one JSON object a line (default text)",
    )


def _simulate_options(simulate: argparse.ArgumentParser) -> None:
    simulate.add_argument(
        "--listen", default="127.0.0.1:8079", metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8079): VM 0 answers at /metrics,"
        " /stats.json, /stats/labels, /vm/parameters and /vm/report, VM n under /<n>/;"
        " / lists them",
    )
    simulate.add_argument(
        "--format", choices=_SIMULATED_FORMATS,
        help="make / (and /<n>/) serve this format instead of the index (default: the index)",
    )
    simulate.add_argument(
        "--fault", choices=tuple(_FAULT_HELP), metavar="FAULT",
        help="misbehave on every request, as listed below (default none)",
    )
    simulate.add_argument("--vms", type=int, default=1, help="how many VMs (default 1)")
    simulate.add_argument(
        "--seed", type=int, default=1,
        help="the seed of the VMs' figures, ages and garbage: the same seed gives the same"
        " fleet, run after run (default 1)",
    )
    simulate.add_argument(
        "--vm", choices=("spur", "classic"), default="spur",
        help="Spur (Pharo 5+) or classic (pre-Spur) VMs (default spur)",
    )
    simulate.add_argument(
        "--condition", choices=("healthy", "leak", "gc_storm", "down"), default="healthy",
        help="every VM's condition from the start (default healthy): leak (live data +60 MiB"
        " a minute), gc_storm (a full GC every 0.4-0.8 s, GC about 65%% of the time), down"
        " (503 to every data request); switch one VM's with POST /<n>/condition?condition=NAME",
    )


def _load(args: argparse.Namespace) -> Config:
    return parse_config(*_document(args))


def _document(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The configuration document (file and command-line overrides) and its source's name."""
    path = default_config_path(args.config)
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = read_config_data(path)
    if getattr(args, "listen", None):
        try:
            listen_address(args.listen)
        except ValueError as exc:  # said of the option, not of the file it overrides
            raise ConfigError("command line", [("--listen", str(exc))]) from None
        _table(data, "http", source)["listen"] = args.listen
    for tag in getattr(args, "tag", []):
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise ConfigError("command line", [("--tag", f"expected KEY=VALUE, got {tag!r}")])
        _table(data, "global_tags", source)[key] = value
    return data, source


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """The table `key` of the document, for a command-line override."""
    table = data.setdefault(key, {})
    # Not a table: validation reports it under its key; the override is moot.
    return table if isinstance(table, dict) else {}


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings, of the parser and its commands, that take a value."""
    found: set[str] = set()
    for action in parser._actions:  # argparse has no public walk of its options
        if action.option_strings and action.nargs != 0:
            found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _value_options(sub)
    return found


def _with_command(tokens: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`tokens` with `serve` in front when they name no command (options may come first)."""
    takes_value = _value_options(parser)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in ("-h", "--help", "-V", "--version") or token in _COMMANDS:
            return tokens
        if token == "--" or not token.startswith("-"):
            break
        index += 2 if token in takes_value else 1
    else:
        return ["serve", *tokens]
    word = tokens[index + 1] if token == "--" and index + 1 < len(tokens) else token
    if word.endswith(".toml") or os.path.isfile(word):  # `telemon FILE` serves FILE
        return ["serve", *tokens]
    close = difflib.get_close_matches(word, _COMMANDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    parser.error(f"unknown command {word!r}{hint} (commands: {', '.join(_COMMANDS)})")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(_with_command(argv, parser))
    for name, default in (("config", None), ("log_level", "info"), ("log_format", "text")):
        if not hasattr(args, name):
            setattr(args, name, default)
    if getattr(args, "file", None) is not None:
        if args.config is not None and args.config != args.file:
            print(f"command line: FILE: {args.file} and -c {args.config}: give one file",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(EXIT_CONFIG)
        args.config = args.file
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if args.command == "config":
        return _config(args.readme)
    if args.command == "alerts":
        return _alerts(args.set or [], settings=args.settings)
    if args.command in ("simulate", "demo"):
        setup_logging(args.log_level, args.log_format)
        return _simulate(args) if args.command == "simulate" else _demo(args.listen)
    # Restarting re-runs the process's own command line: only when it is ours.
    reloader = _Reloader(args) if argv is None and args.command == "serve" else None
    try:
        config = reloader.start() if reloader is not None else _load(args)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        print(f"{_document_source(args)}: ok: {summary(config)}")
        return 0
    if args.command == "once":
        setup_logging("error")
        return asyncio.run(_once(config))
    setup_logging(args.log_level, args.log_format)
    status = _serve(config, reloader, config_path=_document_source(args))
    if reloader is None:
        return status
    if status == _RESTART:
        reloader.restart_process()
    _exit_now(status)


async def _once(config: Config) -> int:
    agent = Agent(config)
    await agent.collect_once()
    failed = False
    for state in agent.collector.states:
        sys.stdout.buffer.write(state.body)
        if not state.health.up:
            failed = True
            # The reason may quote what the target answered: escaped, as in the logs.
            print(escape_text(f"{state.source}: {state.health.last_error}"), file=sys.stderr)
    sys.stdout.flush()
    return EXIT_FAILED if failed else 0


def _listen_address(value: str) -> tuple[str, int] | None:
    try:
        return listen_address(value)  # the rule of [http] listen: a bare port is refused
    except ValueError as exc:
        print(f"command line: --listen: {exc}", file=sys.stderr)
        return None


def _bind_error(exc: OSError) -> str:
    # aiohttp's own message repeats the address; errno alone says what went wrong.
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _port_taken_hint(command: str, host: str, port: int) -> str:
    other = f"{host}:{port + 1 if 0 < port < 65535 else 0}"
    where = " (or [http] listen)" if command == "serve" else ""
    return f"; pick another address with --listen{where}, e.g. telemon {command} --listen {other}"


def _simulate(args: argparse.Namespace) -> int:
    from telemon.simulator.app import run_simulator

    address = _listen_address(args.listen)
    if address is None:
        return EXIT_CONFIG
    try:
        run_simulator(
            *address, fmt=args.format, fault=args.fault, vms=args.vms, seed=args.seed, vm=args.vm,
            condition=args.condition,
        )
    except ValueError as exc:
        print(f"telemon simulate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        hint = _port_taken_hint("simulate", *address) if exc.errno == errno.EADDRINUSE else ""
        _log.error("cannot listen on %s: %s%s", args.listen, _bind_error(exc), hint)
        return EXIT_FAILED
    return 0


def _demo(listen: str) -> int:
    from telemon.demo import DEMO_PATHS, SIMULATOR_URL, demo_app

    address = _listen_address(listen)
    if address is None:
        return EXIT_CONFIG
    app = demo_app(listen)

    def listening(_: str) -> None:  # aiohttp calls it once the socket is bound
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        base = f"http://{shown}:{address[1]}"
        print(
            f"telemon demo: telemon scraping {len(DEMO_PATHS)} simulated Pharo VMs\n"
            f"  status page  {base}/\n"
            f"  metrics      {base}/metrics\n"
            f"  simulator    {app[SIMULATOR_URL]}\n"
            "Stop with Ctrl-C.",
            flush=True,
        )

    try:
        web.run_app(app, host=address[0], port=address[1], print=listening, access_log=None)
    except OSError as exc:
        hint = _port_taken_hint("demo", *address) if exc.errno == errno.EADDRINUSE else ""
        _log.error("cannot listen on %s: %s%s", listen, _bind_error(exc), hint)
        return EXIT_FAILED
    return 0


def _alerts_options(alerts: argparse.ArgumentParser) -> None:
    alerts.add_argument(
        "--set", action="append", metavar="NAME=VALUE",
        help="change a setting, e.g. --set heap_used_ratio=0.9 --set leak_for=1h (repeatable;"
        " default: every setting at its default, as --settings lists them)",
    )
    alerts.add_argument(
        "--settings", action="store_true",
        help="print the settings (name, default, meaning) as a Markdown table instead",
    )


def _alerts(assignments: list[str], *, settings: bool) -> int:
    """Print the rule file with `assignments` applied, or the settings table."""
    from telemon.alerts import SettingError, render_rules, settings_from, settings_table

    if settings:
        sys.stdout.write(settings_table())
        return 0
    try:
        chosen = settings_from(assignments)
    except SettingError as exc:
        print(f"telemon alerts: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    sys.stdout.write(render_rules(chosen))
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
RESTART_HOLDOFF_S = 1.0  # the least time served between two restarts
_HANGUP = signal.SIGHUP if hasattr(signal, "SIGHUP") else None  # none on Windows


class _Reloader:
    """SIGHUP: the file read again; when valid, the process restarted with it (same PID).

    SIGHUP's default action ends the process. The handler is installed before
    the file is first read and stays until the restart's execv, across which
    SIGHUP is blocked (the signal mask survives exec, and a blocked signal
    waits, pending): the new process installs the handler, then unblocks. So
    a SIGHUP at any moment of a restart is delivered afterwards and never
    kills, and several SIGHUPs before the file is read again count as one.

    The document validated is handed to the new process (in a memory file
    whose descriptor survives exec), so it runs exactly what was checked even
    if the file changed meanwhile; a SIGHUP that came meanwhile then reads the
    newer file, as any other. So is the listening socket, when the address
    stays: clients connecting during the restart wait in its backlog instead
    of being refused, and `--listen HOST:0` keeps its port.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pending = False  # a SIGHUP came since the file was last read
        self._wake: Callable[[], None] | None = None
        self._valid: dict[str, Any] | None = None  # the document to restart with
        self._listening_fd: int | None = None  # kept open for the restarted process
        self.inherited: socket.socket | None = None  # the previous process's, listening

    def start(self) -> Config:
        """Install the handler, then load the configuration (handed over, or the file)."""
        if _HANGUP is not None:
            signal.signal(_HANGUP, self._note)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {_HANGUP})  # blocked by a restart
        handed = _handed_over()
        self.inherited = _inherited_socket()
        if handed is not None:
            # Checked before the restart: a SIGHUP since (now delivered) reads the file again.
            return parse_config(handed, _document_source(self.args))
        self.pending = False  # the file is read after any SIGHUP so far
        return _load(self.args)

    def _note(self, signum: int, frame: object) -> None:
        self.pending = True
        if self._wake is not None:
            self._wake()

    def wake(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` (thread- and signal-safe) at each SIGHUP; None stops it."""
        self._wake = callback

    def reload(self) -> bool:
        """Read the file again; True when it is valid (then restart with it), logged if not."""
        self.pending = False
        try:
            data, source = _document(self.args)
            parse_config(data, source)
        except ConfigError as exc:
            for line in exc.lines():
                _log.error("SIGHUP: configuration refused, still running the old one: %s", line)
            return False
        _log.info("SIGHUP: configuration valid, restarting with it")
        self._valid = data
        return True

    def restart_process(self) -> None:
        """The same process (same PID, as Telegraf does on SIGHUP) with the checked document."""
        logging.shutdown()
        if _HANGUP is not None:
            # Until the new process has its handler, a SIGHUP waits instead of killing.
            signal.pthread_sigmask(signal.SIG_BLOCK, {_HANGUP})
            if self.pending:  # came after the check: pending again, for the new process
                os.kill(os.getpid(), _HANGUP)
        if self._valid is not None:
            _hand_over(self._valid)
        if self._listening_fd is not None:
            os.set_inheritable(self._listening_fd, True)
            os.environ[_LISTENING_ENV] = str(self._listening_fd)
        os.execv(sys.executable, sys.orig_argv)

    def keep_listening(self, listening: asyncio.Server) -> None:
        """Keep the (one) listening socket open past the server's close, for the restart."""
        if len(listening.sockets) == 1:
            self._listening_fd = os.dup(listening.sockets[0].fileno())

    def listening_socket(self, host: str, port: int) -> socket.socket | None:
        """The inherited listening socket if it is bound to `host`:`port` (0: any port)."""
        sock, self.inherited = self.inherited, None
        if sock is None:
            return None
        bound_host, bound_port = sock.getsockname()[:2]
        if bound_host == host and port in (0, bound_port):
            return sock
        sock.close()  # another address now: free the port for the new bind
        return None


_LISTENING_ENV = "TELEMON_RESTART_LISTEN_FD"


def _inherited_socket() -> socket.socket | None:
    """The listening socket the process before the restart left open, if any."""
    value = os.environ.pop(_LISTENING_ENV, None)
    if value is None or not value.isdigit():
        return None
    try:
        sock = socket.socket(fileno=int(value))
    except OSError:
        return None
    sock.set_inheritable(False)
    return sock


def _exit_now(status: int) -> NoReturn:
    """Exit without the interpreter's teardown (~0.3 s of freeing objects at exit).

    Only once `serve` has stopped cleanly: every output has written or spooled
    (and fsynced) what it held, and the logs are flushed here.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


_HANDOVER_ENV = "TELEMON_RESTART_CONFIG_FD"


def _hand_over(data: dict[str, Any]) -> None:
    """Leave `data` in a memory file for the process execv starts (Linux; others read the file)."""
    try:
        text = json.dumps(data)
        fd = os.memfd_create("telemon-config")  # no size limit, unlike a pipe
    except (TypeError, ValueError, OSError, AttributeError):
        return
    os.write(fd, text.encode("utf-8"))
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    os.environ[_HANDOVER_ENV] = str(fd)


def _handed_over() -> dict[str, Any] | None:
    """The document the process before the restart checked, if it left one."""
    value = os.environ.pop(_HANDOVER_ENV, None)
    if value is None or not value.isdigit():
        return None
    try:
        with os.fdopen(int(value), "rb") as file:
            data = json.loads(file.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _document_source(args: argparse.Namespace) -> str:
    path = default_config_path(args.config)
    return str(path) if path else "<defaults>"


def _serve(
    config: Config, reloader: _Reloader | None = None, *, config_path: str | None = None
) -> int:
    host, port = config.http.listen
    try:
        restart = asyncio.run(_run_server(config, reloader, config_path))
    except OSError as exc:
        hint = _port_taken_hint("serve", host, port) if exc.errno == errno.EADDRINUSE else ""
        _log.error("cannot listen on %s:%d: %s%s", host, port, _bind_error(exc), hint)
        return EXIT_FAILED
    return _RESTART if restart else 0


async def _run_server(
    config: Config, reloader: _Reloader | None, config_path: str | None = None
) -> bool:
    """Serve until SIGTERM or SIGINT (False) or a SIGHUP with a valid file (True)."""
    from telemon.server import (
        AGENT_KEY,
        SHUTDOWN_TIMEOUT_S,
        ConnectionCap,
        RepeatedErrorFilter,
        create_app,
        max_connections,
    )

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(RepeatedErrorFilter())
    woken = asyncio.Event()
    stop_signal: list[str] = []

    def stopping(sig: signal.Signals) -> None:
        stop_signal.append(sig.name)
        woken.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(sig, stopping, sig)

    def wake() -> None:  # from a signal handler: the loop may be in the middle of anything
        loop.call_soon_threadsafe(woken.set)

    if reloader is not None:
        reloader.wake(wake)
    http = config.http
    app = create_app(config, agent=Agent(config, config_path=config_path))
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=http.idle_timeout,  # also bounds the wait for a request's headers
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()  # starts the agent
    for line in app[AGENT_KEY].describe():  # as Telegraf's "Loaded inputs"
        _log.info("%s", line)
    listening: asyncio.Server | None = None
    try:
        assert runner.server is not None
        cap = ConnectionCap(runner.server, max_connections(http.max_connections))
        inherited = reloader.listening_socket(*http.listen) if reloader is not None else None
        if inherited is not None:
            listening = await loop.create_server(cap, sock=inherited, ssl=http.ssl_context())
        else:
            listening = await loop.create_server(
                cap, *http.listen, ssl=http.ssl_context(), backlog=128, reuse_address=True
            )
        _log_serving(config, listening, cap.limit)
        restart = await _wait_for_stop(woken, stop_signal, reloader)
        _log.info("telemon stopping (%s)", "SIGHUP" if restart else stop_signal[0])
        if restart and reloader is not None:
            reloader.keep_listening(listening)
    finally:
        if reloader is not None:
            reloader.wake(None)
        if listening is not None:
            listening.close()
        await runner.cleanup()  # requests in progress finish, then the agent stops
    _log.info("telemon stopped%s", "; restarting" if restart else "")
    return restart


def _log_serving(config: Config, listening: asyncio.Server, limit: int) -> None:
    scheme = "https" if config.http.ssl_context() else "http"
    for sock in listening.sockets:
        host, port = sock.getsockname()[:2]  # the port bound, also for port 0
        shown = f"[{host}]" if ":" in host else host
        _log.info("telemon %s serving %s://%s:%d%s (at most %d connections)", __version__,
                  scheme, shown, port, config.http.path, limit)  # fmt: skip


async def _wait_for_stop(
    woken: asyncio.Event, stop_signal: list[str], reloader: _Reloader | None
) -> bool:
    """Wait for SIGTERM/SIGINT (False) or a SIGHUP that brings a valid file (True).

    A restart waits until the process has served `RESTART_HOLDOFF_S`: under a
    burst of SIGHUPs it serves between restarts instead of restarting back to
    back, and the file read last before the restart is the one it runs.
    """
    loop = asyncio.get_running_loop()
    restart_at = loop.time() + RESTART_HOLDOFF_S
    restart = False
    while not stop_signal:
        # One read for however many SIGHUPs came since the last one began.
        if reloader is not None and reloader.pending:
            restart = reloader.reload() or restart
            continue
        if restart and loop.time() >= restart_at:
            return True
        woken.clear()
        if not stop_signal and not (reloader is not None and reloader.pending):
            timeout = max(0.0, restart_at - loop.time()) if restart else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout)
    return False
