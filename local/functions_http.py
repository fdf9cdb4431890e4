"""The Functions host's HTTP front door: route prefix, route templates, methods and keys.

What the host does before an HTTP function runs, read from Azure/azure-functions-host:
- src/WebJobs.Script.WebHost/WebScriptHostHttpRoutesManager.cs (InitializeHttpFunctionRoutes):
  each HTTP function is a route under host.json's `extensions.http.routePrefix` ("api" unless
  set), its template the trigger's `route` or else the function's name, with its `methods` as an
  `HttpMethodRouteConstraint`. A method the function does not list matches no route, so it is
  answered as a path no function has: 404, not 405.
- src/WebJobs.Script.WebHost/Middleware/FunctionInvocationMiddleware.cs (GetResultAsync): a
  matched function whose caller does not reach its authLevel gets `UnauthorizedResult` (401,
  empty body) before it runs.
- src/WebJobs.Script.WebHost/Security/Authentication/Keys/AuthenticationLevelHandler.cs: the key
  is the `x-functions-key` header, else the `code` query parameter (a header present wins, even
  empty); a key that is no key of the app authenticates as anonymous.
- src/WebJobs.Script.WebHost/Security/Authorization/AuthUtility.cs (PrincipalHasAuthLevelClaim):
  the master key (admin level) passes every level; a host or function key passes `function`.
Route templates are ASP.NET Core's: literal segments match case-insensitively; `{name}`,
`{name?}` (optional, last), `{*name}` (catch-all), `{name:constraint...}` with the inline
constraints of ASP.NET Core's default constraint map; values are URL-decoded. Routes are tried
in RoutePrecedence order: literals before constrained parameters before parameters before
catch-alls.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

Check = Callable[[str], bool]
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
DEFAULT_PREFIX = "api"
LEVELS = ("anonymous", "function", "admin")  # each passes the levels before it
_PARAM = re.compile(r"\{(?P<star>\*{1,2})?(?P<name>\w+)(?P<constraints>(?::[^}]*)?)(?P<opt>\?)?\}")
_CONSTRAINT = re.compile(r"(?P<name>\w+)(?:\((?P<args>.*)\))?", re.DOTALL)
_INTEGER = re.compile(r"-?\d+")
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class RouteError(ValueError):
    """A route template the Functions host would refuse to index."""


def _integer(bits: int) -> Check:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1)
    return lambda v: bool(_INTEGER.fullmatch(v)) and low <= int(v) < high


def _within(low: float, high: float) -> Check:
    return lambda v: bool(_INTEGER.fullmatch(v)) and low <= int(v) <= high


def _guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _sized(low: int, high: float) -> Check:
    return lambda v: low <= len(v) <= high


# ASP.NET Core's RouteOptions default constraint map (the inline `{name:constraint}` names).
CONSTRAINTS: dict[str, Callable[[list[str]], Check]] = {
    "int": lambda _: _integer(32),
    "long": lambda _: _integer(64),
    "bool": lambda _: lambda v: v.lower() in ("true", "false"),
    "guid": lambda _: _guid,
    "alpha": lambda _: lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
    "decimal": lambda _: lambda v: bool(_NUMBER.fullmatch(v)),
    "double": lambda _: lambda v: bool(_NUMBER.fullmatch(v)),
    "float": lambda _: lambda v: bool(_NUMBER.fullmatch(v)),
    "minlength": lambda a: _sized(int(a[0]), float("inf")),
    "maxlength": lambda a: _sized(0, int(a[0])),
    "length": lambda a: _sized(int(a[0]), int(a[-1])),  # length(n) or length(min,max)
    "min": lambda a: _within(int(a[0]), float("inf")),
    "max": lambda a: _within(float("-inf"), int(a[0])),
    "range": lambda a: _within(int(a[0]), int(a[1])),
    # RegexRouteConstraint: IgnoreCase | CultureInvariant, and not anchored unless it says so.
    "regex": lambda a: lambda v: re.search(",".join(a), v, re.IGNORECASE) is not None,
    "required": lambda _: lambda v: v != "",
}


@dataclass(frozen=True)
class Segment:
    """One path segment of a template: a literal, or a parameter with its checks."""

    literal: str | None = None
    name: str = ""
    checks: tuple[Check, ...] = ()
    optional: bool = False
    catch_all: bool = False

    @property
    def rank(self) -> int:
        """RoutePrecedence's digit: 1 literal, 3 constrained parameter, 4 parameter, 5 catch-all."""
        if self.literal is not None:
            return 1
        if self.catch_all:
            return 5
        return 3 if self.checks else 4

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


def parse_template(template: str) -> tuple[Segment, ...]:
    """A route template's segments; what the host would not index is a RouteError."""
    parts = template.strip("/").split("/")
    segments = []
    for index, part in enumerate(parts):
        if "{" not in part and "}" not in part:
            if not part:
                raise RouteError(f"route {template!r} has an empty segment")
            segments.append(Segment(literal=part))
            continue
        param = _PARAM.fullmatch(part)
        if param is None:
            raise RouteError(f"route {template!r}: segment {part!r} is not one parameter")
        last = index == len(parts) - 1
        if (param["star"] or param["opt"]) and not last:
            raise RouteError(f"route {template!r}: only the last parameter may be optional")
        checks = tuple(_constraint(template, text) for text in _split(param["constraints"]))
        segments.append(
            Segment(
                name=param["name"],
                checks=checks,
                optional=bool(param["opt"]),
                catch_all=bool(param["star"]),
            )
        )
    return tuple(segments)


def _split(constraints: str) -> list[str]:
    """`:int:min(1)` -> ['int', 'min(1)'], keeping colons inside parentheses (regex(a:b))."""
    found, depth, current = [], 0, ""
    for char in constraints[1:] if constraints else "":
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == ":" and depth == 0:
            found.append(current)
            current = ""
        else:
            current += char
    return [*found, current] if constraints else []


def _constraint(template: str, text: str) -> Check:
    parsed = _CONSTRAINT.fullmatch(text)
    factory = CONSTRAINTS.get(parsed["name"].lower()) if parsed else None
    if parsed is None or factory is None:
        raise RouteError(f"route {template!r}: unknown constraint {text!r}")
    args = [arg.strip() for arg in parsed["args"].split(",")] if parsed["args"] else []
    try:
        return factory(args)
    except (IndexError, ValueError):
        raise RouteError(f"route {template!r}: bad arguments in {text!r}") from None


@dataclass(frozen=True)
class Route:
    function: str
    template: str
    segments: tuple[Segment, ...]
    methods: frozenset[str] | None  # None: every method
    auth_level: str

    @classmethod
    def of(cls, function: str, trigger: Mapping[str, Any]) -> Route:
        """The route the host maps for an httpTrigger binding (as function.json writes it)."""
        template = str(trigger.get("route") or function)
        methods = trigger.get("methods")
        level = _text(trigger.get("authLevel") or "function").lower()
        if level not in LEVELS:
            raise RouteError(f"{function}: authLevel {level!r} is not one of {', '.join(LEVELS)}")
        return cls(
            function,
            template,
            parse_template(template),
            frozenset(_text(m).upper() for m in methods) if methods else None,
            level,
        )

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(segment.rank for segment in self.segments)

    def match(self, path: list[str]) -> dict[str, str] | None:
        """The route values if the (decoded) path segments fit this template, else None."""
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.catch_all:
                rest = "/".join(path[index:])
                if rest and not segment.accepts(rest):
                    return None
                return {**values, segment.name: rest} if rest else values
            if index >= len(path):
                return values if segment.optional else None
            value = path[index]
            if segment.literal is not None:
                if value.lower() != segment.literal.lower():
                    return None
            elif segment.accepts(value):
                values[segment.name] = value
            else:
                return None
        return values if len(path) == len(self.segments) else None


def _text(value: Any) -> str:
    """A binding value as text: the SDK gives enums (AuthLevel.FUNCTION), function.json strings."""
    return str(getattr(value, "value", value))


@dataclass(frozen=True)
class Keys:
    """The app's keys: a host key (`default`, function level) and the master key (admin)."""

    function: str = field(default_factory=lambda: _new_key())
    master: str = field(default_factory=lambda: _new_key())

    def level(self, presented: str | None) -> str:
        """The level a presented key authenticates as (compared in constant time)."""
        if presented and hmac.compare_digest(presented.encode(), self.master.encode()):
            return "admin"
        if presented and hmac.compare_digest(presented.encode(), self.function.encode()):
            return "function"
        return "anonymous"


def _new_key() -> str:
    """A key like the host's own: 40 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(40)


@dataclass(frozen=True)
class Admitted:
    function: str
    route_params: dict[str, str]


@dataclass(frozen=True)
class Refused:
    status: int  # 404: no route for this method and path; 401: the key does not reach the level


class FrontDoor:
    """Which function a request reaches, with what route values, or the host's refusal."""

    def __init__(
        self, triggers: Mapping[str, Mapping[str, Any]], keys: Keys, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self.keys = keys
        self.prefix = prefix.strip("/")
        routes = [Route.of(name, trigger) for name, trigger in triggers.items()]
        self.routes = sorted(routes, key=lambda route: route.precedence)

    def admit(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
    ) -> Admitted | Refused:
        found = self._route(method.upper(), path)
        if found is None:
            return Refused(404)
        route, values = found
        level = self.keys.level(presented_key(headers, query))
        if LEVELS.index(level) < LEVELS.index(route.auth_level):
            return Refused(401)
        return Admitted(route.function, values)

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        segments = [unquote(part) for part in path.split("?", 1)[0].strip("/").split("/")]
        prefix = self.prefix.split("/") if self.prefix else []
        if [s.lower() for s in segments[: len(prefix)]] != [p.lower() for p in prefix]:
            return None
        rest = segments[len(prefix) :] if segments != [""] else []
        for route in self.routes:
            if route.methods is not None and method not in route.methods:
                continue
            values = route.match(rest)
            if values is not None:
                return route, values
        return None


def presented_key(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str | None:
    """The header wins when present, even empty; then the first `code` query value."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if KEY_HEADER in lowered:
        return lowered[KEY_HEADER]
    codes = query.get(KEY_QUERY)
    return codes[0] if codes else None


def route_prefix(host_document: Mapping[str, Any]) -> str:
    """host.json's extensions.http.routePrefix ("api" when absent; "" serves from the root)."""
    http = host_document.get("extensions", {}).get("http", {})
    prefix = http.get("routePrefix", DEFAULT_PREFIX)
    return str(prefix).strip("/")
