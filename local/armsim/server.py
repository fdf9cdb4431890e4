"""HTTPS front door: authorization, routing, api-version, throttling, faults, request log, admin."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.armsim import blobdata
from local.armsim.authz import Authorization
from local.armsim.errors import ArmError, bad_request
from local.armsim.faults import IMMEDIATE_KINDS, FaultRule, normalise_region
from local.armsim.protocol import Reply, Request
from local.armsim.routes import match
from local.armsim.state import RequestRecord, World
from local.armsim.throttle import HEADER_NAMES, RequestClass
from local.armsim.tls import TlsFiles

if TYPE_CHECKING:
    from local.armsim.simulator import ArmSimulator

_CLASS: dict[str, RequestClass] = {"GET": "read", "HEAD": "read", "DELETE": "delete"}


def request_class(method: str) -> RequestClass:
    return _CLASS.get(method, "write")


def _immediate_fault(rule: FaultRule, region: str | None) -> ArmError:
    if rule.kind == "429":
        return ArmError(
            429,
            "TooManyRequests",
            "The request is being throttled (injected fault).",
            {"Retry-After": str(rule.retry_after)},
        )
    if rule.kind == "region-outage":
        return ArmError(503, "ServiceUnavailable", f"The region '{region}' is unavailable.")
    return ArmError(500, "InternalServerError", "An internal error occurred (injected fault).")


def _region(world: World, request: Request, args: dict[str, str]) -> str | None:
    """The region a request is about: its URL, its body, or the resource/group it names."""
    if "location" in args:
        return normalise_region(args["location"])
    if isinstance(request.body, dict) and request.body.get("location"):
        return normalise_region(str(request.body["location"]))
    parts = request.path.strip("/").split("/")
    if len(parts) >= 8:
        resource = world.find("/" + "/".join(parts[:8]))
        if resource is not None:
            return resource.location
    if "rg" in args:
        group = world.groups.get((args["sub"].lower(), args["rg"].lower()))
        return group.location if group else None
    return None


def dispatch(
    world: World,
    authz: Authorization,
    throttle: bool,
    method: str,
    target: str,
    headers: dict[str, str],
    payload: bytes,
    base_url: str,
) -> tuple[Reply, str]:
    """Answer one ARM request and log it; returns the reply and the logged path."""
    split = urllib.parse.urlsplit(target)
    path = urllib.parse.unquote(split.path)
    query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
    kind = request_class(method)
    remaining: int | None = None
    with world.lock:
        world.settle()
        try:
            principal = authz.authenticate(headers.get("authorization", ""))
            found = match(method, path)
            if found is None:
                raise ArmError(404, "NotFound", f"No ARM route for {method} {path}.")
            route, args = found
            request = Request(method, path, query, _json(payload), base_url, route.operation)
            if not request.api_version:
                raise bad_request(
                    "The api-version query parameter (?api-version=) is required.",
                    "MissingApiVersionParameter",
                )
            if request.api_version not in route.api_versions:
                raise bad_request(
                    f"The api-version '{request.api_version}' is invalid. The supported versions "
                    f"are '{', '.join(sorted(route.api_versions))}'.",
                    "InvalidApiVersionParameter",
                )
            if "sub" in args:
                world.require_subscription(args["sub"])
            authz.authorize(
                principal,
                method,
                path,
                request.body,
                lambda sub, rg: (sub.lower(), rg.lower()) in world.groups,
            )
            if "sub" in args and throttle:
                remaining, wait = world.throttle.take(args["sub"], kind, world.now())
                if wait:
                    raise ArmError(
                        429,
                        "TooManyRequests",
                        f"Number of {kind} requests for subscription '{args['sub']}' "
                        "exceeded the limit.",
                        {"Retry-After": str(wait)},
                    )
            if route.operation == "snapshots.create" and _create_option(request) == "CopyStart":
                request.operation = "snapshots.copy"
            region = _region(world, request, args)
            rule = world.faults.take(request.operation, [path], region, IMMEDIATE_KINDS)
            if rule is not None:
                raise _immediate_fault(rule, region)
            reply = route.handler(world, request, args)
        except ArmError as error:
            reply = Reply(error.status, error.body(), dict(error.headers))
        if remaining is not None:
            reply.headers[HEADER_NAMES[kind]] = str(remaining)
        reply.headers.setdefault("x-ms-request-id", world.new_uuid())
        world.requests.append(RequestRecord(method, path, reply.status, kind, world.now()))
    return reply, path


def _json(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        raise bad_request(
            "The request content is not valid JSON.", "InvalidRequestContent"
        ) from None


def _create_option(request: Request) -> str:
    body = request.body if isinstance(request.body, dict) else {}
    return str(((body.get("properties") or {}).get("creationData") or {}).get("createOption"))


def admin(sim: ArmSimulator, method: str, path: str, payload: bytes) -> Reply:
    """The /_admin endpoints for `python -m local.armsim` and the CLI: clock, bill, log, faults."""
    try:
        body = _json(payload) or {}
        if method == "GET" and path == "/_admin/clock":
            return Reply(200, {"now": sim.clock.now().isoformat()})
        if method == "POST" and path == "/_admin/clock/advance":
            seconds = body.get("seconds") if isinstance(body, dict) else None
            if not isinstance(seconds, int | float) or seconds < 0:
                raise bad_request('Give {"seconds": N} with N >= 0.')
            return Reply(200, {"now": sim.advance(float(seconds)).isoformat()})
        if method == "GET" and path == "/_admin/bill":
            return Reply(200, sim.bill())
        if method == "GET" and path == "/_admin/requests":
            return Reply(
                200,
                [{**asdict(r), "at": r.at.isoformat()} for r in sim.requests],
            )
        if method == "POST" and path == "/_admin/faults":
            if not isinstance(body, dict):
                raise bad_request("Give a fault rule as a JSON object.")
            try:
                rule = FaultRule(**body)
            except (TypeError, ValueError) as error:
                raise bad_request(f"Bad fault rule: {error}") from None
            sim.add_fault(rule)
            return Reply(201, asdict(rule))
        raise ArmError(404, "NotFound", f"No admin endpoint {method} {path}.")
    except ArmError as error:
        return Reply(error.status, error.body())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; without TCP_NODELAY every kept-alive request
    # waits out the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server: _ArmHttpServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        base_url = f"https://{host}"
        if blobdata.is_blob_path(self.path):
            self._send_blob()
            return
        if self.path.startswith("/_admin/"):
            reply = admin(
                self.server.sim, self.command, urllib.parse.urlsplit(self.path).path, payload
            )
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply, _ = dispatch(
                self.server.sim.world,
                self.server.sim.authorization,
                self.server.sim.throttle_enabled,
                self.command,
                self.path,
                headers,
                payload,
                base_url,
            )
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_blob(self) -> None:
        """A managed-disk SAS request: the blob data plane answers it (bytes, not JSON)."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = blobdata.serve(self.server.sim.world, self.command, self.path, headers)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if "Content-Length" not in reply.headers:
            self.send_header("Content-Length", str(reply.length))
        self.end_headers()
        if self.command != "HEAD":
            for piece in reply.body:
                self.wfile.write(piece)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the simulator keeps its own request log."""


class _ArmHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sim: ArmSimulator) -> None:
        super().__init__(address, _Handler)
        self.sim = sim


@dataclass(frozen=True)
class ArmServer:
    """A running simulator: where it answers and which CA to trust."""

    url: str
    ca_path: Path
    sim: ArmSimulator


@contextmanager
def serving(sim: ArmSimulator, tls: TlsFiles, host: str, port: int) -> Iterator[ArmServer]:
    """Serve `sim` over HTTPS on host:port (0 = a free port) for the duration of the block."""
    httpd = _ArmHttpServer((host, port), sim)
    httpd.socket = tls.server_context().wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="armsim", daemon=True
    )
    thread.start()
    try:
        yield ArmServer(f"https://{host}:{httpd.server_address[1]}", tls.ca_path, sim)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
