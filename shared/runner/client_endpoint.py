"""The loopback HTTP endpoint the real `DurableOrchestrationClient` talks to.

It answers the extension's HTTP API (the paths the client builds from `rpcBaseUrl`, and the
management URLs of `create_check_status_response`) with the extension's status codes, so client
code runs unchanged against the local host.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from .errors import InstanceGoneError, InstanceNotFoundError, UnknownFunctionError
from .instances import ACTIVE, InstanceStatus

if TYPE_CHECKING:
    from .host import LocalDurableHost

_RPC_PATH = "/durabletask/"
_WEBHOOK_PATH = "/runtime/webhooks/durabletask"
_ID_PLACEHOLDER = "INSTANCEID"
_START = re.compile(r"/orchestrators/(?P<name>[^/]+)(?:/(?P<id>[^/]+))?/?")
_INSTANCE = re.compile(r"/instances/(?P<id>[^/]+)/?")
_INSTANCES = re.compile(r"/instances/?")
_RAISE = re.compile(r"/instances/(?P<id>[^/]+)/raiseEvent/(?P<event>[^/]+)/?")
_TERMINATE = re.compile(r"/instances/(?P<id>[^/]+)/terminate/?")

Reply = tuple[int, Any]

# An instance query is answered one page at a time, as the extension does
# (Azure/azure-functions-durable-extension, HttpApiHandler.HandleGetStatusRequestAsync): at most
# `top` instances (default 100, OrchestrationStatusQueryCondition.PageSize), and while more remain
# the response header x-ms-continuation-token, which the caller sends back as a request header of
# the same name for the next page. Azure Storage keys instance rows by instance id
# (Azure/durabletask, AzureTableTrackingStore), so pages follow instance-id order; the token here
# is the id the next page starts at. The Python SDK reads the first page only.
PAGE_SIZE = 100
CONTINUATION_HEADER = "x-ms-continuation-token"


class ClientEndpoint:
    """A ThreadingHTTPServer on a free 127.0.0.1 port, serving one host until closed."""

    def __init__(self, host: LocalDurableHost) -> None:
        handler = type("Handler", (_Handler,), {"host": host})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long `close` waits for the loop to notice
            name="durable-client-endpoint",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def binding(self, hub_name: str) -> str:
        """The durableClient binding JSON the extension hands a client function."""
        base = self.origin + _WEBHOOK_PATH
        instance = f"{base}/instances/{_ID_PLACEHOLDER}"
        query = f"taskHub={quote(hub_name)}&connection=Storage"
        return json.dumps(
            {
                "taskHubName": hub_name,
                "creationUrls": {
                    "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}"
                    "[/{instanceId}]?",
                    "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}"
                    "[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval="
                    "{intervalInSeconds}&",
                },
                "managementUrls": {
                    "id": _ID_PLACEHOLDER,
                    "statusQueryGetUri": f"{instance}?{query}",
                    "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
                    "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
                    "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
                    "purgeHistoryDeleteUri": f"{instance}?{query}",
                    "restartPostUri": f"{instance}/restart?{query}",
                    "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
                    "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
                },
                "baseUrl": base,
                "requiredQueryStringParameters": "",
                "rpcBaseUrl": self.origin + _RPC_PATH,
                "httpBaseUrl": self.origin,
            }
        )


def status_payload(status: InstanceStatus, show_input: bool = True) -> dict[str, Any]:
    """The extension's status JSON; the input is the JSON text the client sent, as it stores it."""
    shown_input = None
    if show_input and status.input is not None:
        shown_input = json.dumps(status.input)
    return {
        "name": status.name,
        "instanceId": status.instance_id,
        "runtimeStatus": status.runtime_status,
        "input": shown_input,
        "customStatus": status.custom_status,
        "output": status.output,
        "createdTime": _seconds(status.created_at),
        "lastUpdatedTime": _seconds(status.last_updated_at),
    }


class _Handler(BaseHTTPRequestHandler):
    host: LocalDurableHost
    reply_headers: dict[str, str]  # extra headers of the reply being built

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the host's callers read statuses, not access logs."""

    def _answer(self, method: str) -> None:
        self.reply_headers = {}
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            code, payload = self._route(method, _api_path(parts.path), query, body)
        except Exception as exc:  # the extension answers 500 with the exception's message
            code, payload = 500, _error("Something went wrong while processing your request", exc)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in self.reply_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> Reply:
        host = self.host
        if (match := _START.fullmatch(path)) and method == "POST":
            return self._start(match["name"], match["id"], body)
        if (match := _RAISE.fullmatch(path)) and method == "POST":
            return self._on_instance(host.raise_event, match["id"], match["event"], _value(body))
        if (match := _TERMINATE.fullmatch(path)) and method == "POST":
            return self._on_instance(host.terminate, match["id"], query.get("reason", ""))
        if (match := _INSTANCE.fullmatch(path)) and method in ("GET", "DELETE"):
            return self._instance(method, match["id"], query)
        if _INSTANCES.fullmatch(path) and method in ("GET", "DELETE"):
            return self._query(method, query)
        return 404, None

    def _start(self, name: str, instance_id: str | None, body: bytes) -> Reply:
        try:
            iid = self.host.start(name, _value(body), instance_id)
        except (UnknownFunctionError, ValueError) as exc:
            return 400, _error("One or more of the arguments submitted is incorrect", exc)
        binding = json.loads(self.host.client_binding())
        urls = {
            key: value.replace(_ID_PLACEHOLDER, iid)
            for key, value in binding["managementUrls"].items()
        }
        return 202, urls

    def _on_instance(self, operation: Any, instance_id: str, *args: Any) -> Reply:
        try:
            operation(instance_id, *args)
        except InstanceNotFoundError:
            return 404, None
        except InstanceGoneError:
            return 410, None
        return 202, None

    def _instance(self, method: str, instance_id: str, query: dict[str, str]) -> Reply:
        try:
            status = self.host.status(instance_id)
        except InstanceNotFoundError:
            return 404, None
        if method == "DELETE":
            self.host.purge(instance_id)
            return 200, {"instancesDeleted": 1}
        code = 202 if status.runtime_status in ACTIVE else 200
        if status.runtime_status == "Failed" and query.get("returnInternalServerErrorOnFailure"):
            code = 500
        payload = status_payload(status, query.get("showInput", "true").lower() != "false")
        if query.get("showHistory", "").lower() == "true":
            payload["historyEvents"] = self.host.history(instance_id)
        return code, payload

    def _query(self, method: str, query: dict[str, str]) -> Reply:
        """Instances matching the extension's filters (prefix, created time range, statuses): a
        page of them (GET), or their histories purged (DELETE)."""
        prefix = query.get("instanceIdPrefix", "")
        wanted = {s for s in query.get("runtimeStatus", "").split(",") if s}
        since = _moment(query.get("createdTimeFrom"))
        until = _moment(query.get("createdTimeTo"))
        found = [
            status
            for status in self.host.instances()
            if status.instance_id.startswith(prefix)
            and (not wanted or status.runtime_status in wanted)
            and (since is None or status.created_at >= since)
            and (until is None or status.created_at <= until)
        ]
        if method == "GET":
            return 200, self._page(found, query)
        if since is None:
            return 400, "Please provide value for 'createdTimeFrom' parameter."
        for status in found:
            self.host.purge(status.instance_id)
        return (200, {"instancesDeleted": len(found)}) if found else (404, None)

    def _page(self, found: list[InstanceStatus], query: dict[str, str]) -> list[dict[str, Any]]:
        """One page of the query's instances, from the continuation token the caller sent; the
        token of the next page goes in the reply headers while more remain."""
        size = _page_size(query.get("top"))
        ordered = sorted(found, key=lambda status: status.instance_id)
        token = self.headers.get(CONTINUATION_HEADER)
        if token:
            start = base64.urlsafe_b64decode(token.encode()).decode()
            ordered = [status for status in ordered if status.instance_id >= start]
        page, rest = ordered[:size], ordered[size:]
        if rest:
            next_id = rest[0].instance_id.encode()
            self.reply_headers[CONTINUATION_HEADER] = base64.urlsafe_b64encode(next_id).decode()
        show_input = query.get("showInput", "true").lower() != "false"
        return [status_payload(status, show_input) for status in page]


def _page_size(top: str | None) -> int:
    """`top` as the extension reads it: a whole number, else the default page size."""
    try:
        size = PAGE_SIZE if top is None else int(top)
    except ValueError:
        return PAGE_SIZE
    if size < 1:
        raise ValueError(f"top={top!r}: a page holds at least one instance")
    return size


def _api_path(path: str) -> str:
    for prefix in (_WEBHOOK_PATH, _RPC_PATH.rstrip("/")):
        if path.startswith(prefix):
            return path[len(prefix) :] or "/"
    return path


def _value(body: bytes) -> Any:
    """A posted payload as a Python value. The Python client posts a JSON string holding the JSON
    text of its value (it serialises twice); other clients post the value itself."""
    if not body.strip():
        return None
    decoded = json.loads(body)
    if isinstance(decoded, str):
        try:
            return json.loads(decoded)
        except ValueError:
            return decoded
    return decoded


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(message: str, exc: Exception) -> dict[str, str]:
    return {"Message": message, "ExceptionMessage": str(exc), "ExceptionType": type(exc).__name__}
