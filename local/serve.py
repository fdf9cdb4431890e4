"""`backupdr serve` (`python -m local.serve`): the Function App on a loopback port, as `func start`.

Core Tools cannot be installed everywhere, so this gives what `func start` gives: the app's HTTP
functions over real HTTP behind the Functions host's front door (route prefix, templates,
methods, function keys: local/functions_http.py), and its timer triggers firing, on the local
stack (Azurite and the ARM simulator). It writes `.backupdr/local.json` for the CLI.

Clocks: virtual (default) stands still until something moves it. In-flight work waiting on a
durable timer moves it there at once (as `make demo` and the CLI do); the simulator's admin
endpoint moves it by hand (`POST /_admin/clock/advance {"seconds": N}`), and so does a CLI
workflow waiting on its own timers. The timer triggers the clock passes then fire, each once.
`--real-clock`: the clock follows the wall clock and timers fire on time.

The local durable host is single-threaded: HTTP requests and the timer loop take turns (a lock).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import requests

from local import settings_file
from local.functions_http import KEY_HEADER, Admitted, FrontDoor, Keys, route_prefix
from local.settings_file import LocalSettings
from local.stack import FLEETS, ROOT, Stack, local_stack

DEFAULT_PORT = 7071  # func start's
POLL_SECONDS = 0.2  # how often the timer loop looks at the clock when no work waits
log = logging.getLogger("backupdr.serve")
_KEY_IN_QUERY = re.compile(r"([?&]code=)[^&\s]*")  # keys stay out of the request log


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""


class FunctionsServer:
    """The app's HTTP functions on 127.0.0.1:`port` (0: a free one) and, with `drive`, a loop that
    fires its timers and runs its work; tests leave `drive` off and run the host themselves."""

    def __init__(
        self,
        stack: Stack,
        *,
        port: int = 0,
        drive: bool = True,
        real_clock: bool = False,
        keys: Keys | None = None,
    ) -> None:
        self.stack = stack
        self.keys = keys or Keys()
        self.real_clock = real_clock
        host_document = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
        self.door = FrontDoor(stack.host.http_triggers(), self.keys, route_prefix(host_document))
        self._turn = threading.Lock()  # one caller in the durable host at a time
        self._stopping = threading.Event()
        self._httpd = _HttpServer(("127.0.0.1", port), self.handle)
        self.origin = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._httpd.serve_forever, name="functions-http", daemon=True)
        ]
        if drive:
            self._threads.append(threading.Thread(target=self._drive, name="timers", daemon=True))

    @property
    def api(self) -> str:
        return f"{self.origin}/{self.door.prefix}" if self.door.prefix else self.origin

    def client(self) -> ApiClient:
        return ApiClient(self.api, self.keys.function)

    @contextmanager
    def running(self) -> Iterator[FunctionsServer]:
        """Serve (and drive) until the block ends."""
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stopping.set()
            self._httpd.shutdown()
            self._httpd.server_close()
            for thread in self._threads:
                thread.join()

    # -- HTTP ----------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """One request, as the Functions host answers it (refusals have empty bodies)."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        verdict = self.door.admit(method, parts.path, headers, query)
        if not isinstance(verdict, Admitted):
            return Reply(verdict.status, {})
        request = func.HttpRequest(
            method=method.upper(),
            url=f"{self.origin}{target}",
            headers=dict(headers),
            params={name: values[0] for name, values in query.items()},
            route_params=verdict.route_params,
            body=body,
        )
        with self._turn:
            try:
                response = self.stack.host.call_http(verdict.function, request, served=True)
            except Exception:  # the host answers an unhandled exception with an empty 500
                log.error("%s failed:\n%s", verdict.function, traceback.format_exc())
                return Reply(500, {})
        headers_out = {"Content-Type": f"{response.mimetype}; charset={response.charset}"}
        return Reply(
            response.status_code, {**headers_out, **dict(response.headers)}, response.get_body()
        )

    # -- timers and work -----------------------------------------------------------------------

    def _drive(self) -> None:
        checked = self.stack.clock.now()
        while True:
            waiting = False
            try:
                with self._turn:
                    checked, waiting = self._step(checked)
            except Exception:
                log.error("the timer loop failed a step:\n%s", traceback.format_exc())
            if self._stopping.wait(0 if waiting else POLL_SECONDS):
                return

    def _step(self, checked: datetime) -> tuple[datetime, bool]:
        """Fire the timers the clock has passed since `checked`, then run the work that is due:
        on the virtual clock, up to the next durable timer some in-flight work waits on."""
        clock, host = self.stack.clock, self.stack.host
        if self.real_clock:
            clock.advance_to(datetime.now(UTC))
        host.fire_missed_timers(since=checked)
        now = clock.now()
        waiting = None if self.real_clock else host.next_timer()
        until = max(now, waiting) if waiting else now
        host.run_timers(until=until)
        return until, waiting is not None

    # -- what the CLI needs --------------------------------------------------------------------

    def local_settings(self) -> LocalSettings:
        env = self.stack.cli_env()
        return LocalSettings(
            pid=os.getpid(),
            api=self.api,
            function_key=self.keys.function,
            master_key=self.keys.master,
            simulator=env["BACKUPDR_SIMULATOR"],
            ca_bundle=env["BACKUPDR_CA_BUNDLE"],
            subscription=env["AZURE_SUBSCRIPTION_ID"],
            clock="real" if self.real_clock else "virtual",
            env=env,
        )


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handle: Callable[[str, str, Mapping[str, str], bytes], Reply],
    ) -> None:
        super().__init__(address, _Handler)
        self.handle_request_for = handle


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # see local/armsim/server.py: no delayed-ACK wait per request
    server: _HttpServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.server.handle_request_for(
            self.command, self.path, dict(self.headers.items()), body
        )
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s", _KEY_IN_QUERY.sub(r"\1***", format % args))


@dataclass(frozen=True)
class ApiClient:
    """Requests to the served app with its function key, over real HTTP (tests, scripts)."""

    api: str
    key: str
    timeout: float = 300.0  # a safety net for a hung server, not an expectation

    def call(self, method: str, path: str, body: bytes = b"") -> requests.Response:
        headers = {KEY_HEADER: self.key}
        url = path if "://" in path else f"{self.api}/{path}"
        return requests.request(method, url, data=body, headers=headers, timeout=self.timeout)


# -- the command -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="backupdr serve", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--fleet", type=Path, default=FLEETS / "tiny.json", help="fleet JSON")
    parser.add_argument("--start", help="the virtual clock's start, ISO 8601 (default: now)")
    parser.add_argument("--real-clock", action="store_true", help="timers on the wall clock")
    parser.add_argument(
        "--settings-file",
        type=Path,
        help=f"where to write the CLI's settings (${settings_file.PATH_VARIABLE} or "
        f"{settings_file.DEFAULT_PATH})",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: give 0 to 65535")
    if not args.fleet.is_file():
        parser.error(f"--fleet {args.fleet}: no such file")
    start = _start(parser, args.start, args.real_clock)
    path = args.settings_file or settings_file.settings_path(os.environ)
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.INFO)  # the request log, as func start prints it
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with local_stack(args.fleet, start=start) as stack:
        try:
            server = FunctionsServer(stack, port=args.port, real_clock=args.real_clock)
        except OSError as error:
            print(
                f"error: cannot listen on 127.0.0.1:{args.port}: {error.strerror}", file=sys.stderr
            )
            print("  give --port N, or --port 0 for a free port", file=sys.stderr)
            return 2
        with server.running():
            settings = server.local_settings()
            settings_file.write(path, settings)
            try:
                print(banner(server, settings, path), flush=True)
                stop.wait()
            except KeyboardInterrupt:
                pass
            finally:
                settings_file.remove(path, settings.pid)
    print("Stopped the Function App, the ARM simulator and Azurite.", flush=True)
    return 0


def _start(parser: argparse.ArgumentParser, text: str | None, real_clock: bool) -> datetime:
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    if real_clock:
        parser.error("--start: the real clock starts now")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        parser.error(f"--start {text!r}: give an ISO 8601 moment, e.g. 2026-11-10T09:00Z")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def banner(server: FunctionsServer, settings: LocalSettings, path: Path) -> str:
    """What `func start` prints, and what to try next."""
    stack, key, api = server.stack, settings.function_key, settings.api
    routes = [
        f"  {'/'.join(sorted(route.methods or {'ANY'})):<5} {api}/{route.template}"
        f"  ({route.function})"
        for route in sorted(server.door.routes, key=lambda r: r.template)
    ]
    timers = [f"  {cron:<18} {name}" for name, cron in stack.host.timer_schedules().items()]
    clock = (
        "real (timers fire on the wall clock)"
        if server.real_clock
        else f"virtual, at {stack.clock.now():%Y-%m-%d %H:%M:%S} UTC; move it with\n"
        f"    curl --cacert {settings.ca_bundle} -X POST {settings.simulator}/_admin/clock/advance"
        " -d '{\"seconds\": 3600}'"
    )
    return "\n".join(
        [
            f"The Function App is up on {server.origin}  (Ctrl+C stops everything)",
            "HTTP functions:",
            *routes,
            "Timer functions:",
            *timers,
            "",
            f"Function key:   {key}",
            f"ARM simulator:  {settings.simulator}  (CA {settings.ca_bundle})",
            f"Azurite tables: {stack.azurite.table_url}",
            f"Clock:          {clock}",
            f"CLI settings:   {path}  (backupdr reads it; removed when serve stops)",
            "",
            "Try:",
            f"  curl -i -X POST -H 'x-functions-key: {key}' {api}/backups/web-01",
            f"  curl -s -H 'x-functions-key: {key}' {api}/operations/<id from the 202>",
            f"  curl -s '{api}/status?code={key}'",
            "  backupdr backup list web-01",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
