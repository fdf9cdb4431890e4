"""The Functions host's front door: which function a request reaches, or what the host answers.

The rules are read from Azure/azure-functions-host (see local/functions_http.py): methods are a
route constraint (WebScriptHostHttpRoutesManager.cs), so a method a function does not list is a
404 like an unknown path; a key below the function's authLevel is a 401 before the function runs
(FunctionInvocationMiddleware.cs); the key is the x-functions-key header, else `code`
(AuthenticationLevelHandler.cs); the master key passes every level (AuthUtility.cs).
"""

from __future__ import annotations

from typing import Any

import pytest

from local.functions_http import (
    Admitted,
    FrontDoor,
    Keys,
    Refused,
    Route,
    RouteError,
    parse_template,
    route_prefix,
)

KEYS = Keys(function="function-key", master="master-key")


def _trigger(route: str | None, methods: list[str] | None = None, level: str = "function") -> Any:
    return {"route": route, "methods": methods, "authLevel": level}


TRIGGERS = {
    "start_backup": _trigger("backups/{vm}", ["POST"]),
    "operation_status": _trigger("operations/{id}", ["GET"]),
    "status": _trigger("status", ["GET"]),
    "vm_backups": _trigger("vms/{vm}/backups", ["GET"]),
    "health": _trigger(None, None, "anonymous"),  # no route: the function's name; any method
    "purge_all": _trigger("admin-only/purge", ["POST"], "admin"),
    "by_number": _trigger("items/{n:int}", ["GET"]),
    "by_name": _trigger("items/{name:alpha}", ["GET"]),
    "latest": _trigger("items/latest", ["GET"]),
    "files": _trigger("files/{*path}", ["GET"]),
    "pages": _trigger("pages/{page?}", ["GET"]),
}
DOOR = FrontDoor(TRIGGERS, KEYS)


def _admit(
    method: str, path: str, headers: dict[str, str] | None = None, code: str | None = None
) -> Admitted | Refused:
    query = {"code": [code]} if code is not None else {}
    return DOOR.admit(method, path, headers or {}, query)


WITH_KEY = {"x-functions-key": "function-key"}


class TestRouting:
    """Route prefix, templates, constraints and methods pick one function, or none (404)."""

    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            ("POST", "/api/backups/web-01", Admitted("start_backup", {"vm": "web-01"})),
            ("post", "/API/Backups/web-01/", Admitted("start_backup", {"vm": "web-01"})),
            ("POST", "/api/backups/bad%20name", Admitted("start_backup", {"vm": "bad name"})),
            ("GET", "/api/vms/db-01/backups", Admitted("vm_backups", {"vm": "db-01"})),
            ("DELETE", "/api/health", Admitted("health", {})),
            ("GET", "/api/items/42", Admitted("by_number", {"n": "42"})),
            ("GET", "/api/items/abc", Admitted("by_name", {"name": "abc"})),
            ("GET", "/api/items/latest", Admitted("latest", {})),
            ("GET", "/api/files/a/b/c.txt", Admitted("files", {"path": "a/b/c.txt"})),
            ("GET", "/api/pages", Admitted("pages", {})),
            ("GET", "/api/pages/3", Admitted("pages", {"page": "3"})),
        ],
        ids=[
            "template",
            "case-and-trailing-slash",
            "decoded",
            "literal-after-parameter",
            "no-route-means-function-name-any-method",
            "int-constraint",
            "alpha-constraint",
            "literal-before-parameter",
            "catch-all",
            "optional-absent",
            "optional-present",
        ],
    )
    def test_a_request_reaches_the_function_its_route_names(
        self, method: str, path: str, expected: Admitted
    ) -> None:
        assert _admit(method, path, WITH_KEY) == expected

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/backups/web-01"),
            ("PUT", "/api/status"),
            ("GET", "/api/nothing-here"),
            ("POST", "/backups/web-01"),
            ("GET", "/api/items/4x2"),
            ("GET", "/api/items/99999999999"),
            ("GET", "/api/vms/db-01/backups/extra"),
            ("GET", "/"),
        ],
        ids=[
            "get-on-post-route",
            "put-on-get-route",
            "unknown-path",
            "no-prefix",
            "fits-no-constraint",
            "int-overflow",
            "extra-segment",
            "root",
        ],
    )
    def test_no_route_for_the_method_and_path_is_404(self, method: str, path: str) -> None:
        """A method the function does not list is a route constraint, so the host answers as
        for a path no function has: 404, not 405 (WebScriptHostHttpRoutesManager.cs)."""
        assert _admit(method, path, WITH_KEY) == Refused(404)

    def test_the_route_prefix_comes_from_host_json(self) -> None:
        assert route_prefix({}) == "api"
        assert route_prefix({"extensions": {"http": {"routePrefix": "/v1/"}}}) == "v1"
        door = FrontDoor(TRIGGERS, KEYS, prefix="")
        assert door.admit("GET", "/status", WITH_KEY, {}) == Admitted("status", {})


class TestKeys:
    """A key below the function's authLevel is refused with 401 before the function runs."""

    @pytest.mark.parametrize(
        ("headers", "code", "expected"),
        [
            ({"x-functions-key": "function-key"}, None, Admitted("status", {})),
            ({"X-Functions-Key": "function-key"}, None, Admitted("status", {})),
            ({}, "function-key", Admitted("status", {})),
            ({"x-functions-key": "master-key"}, None, Admitted("status", {})),
            ({}, None, Refused(401)),
            ({"x-functions-key": "wrong"}, None, Refused(401)),
            ({}, "wrong", Refused(401)),
            ({"x-functions-key": ""}, "function-key", Refused(401)),
            ({"x-functions-key": "wrong"}, "function-key", Refused(401)),
        ],
        ids=[
            "header",
            "header-any-case",
            "code-query",
            "master-passes-function",
            "no-key",
            "wrong-header",
            "wrong-code",
            "empty-header-wins-over-code",
            "header-wins-over-code",
        ],
    )
    def test_a_function_level_route_wants_a_function_or_master_key(
        self, headers: dict[str, str], code: str | None, expected: Admitted | Refused
    ) -> None:
        assert _admit("GET", "/api/status", headers, code) == expected

    def test_an_admin_route_wants_the_master_key(self) -> None:
        assert _admit("POST", "/api/admin-only/purge", WITH_KEY) == Refused(401)
        master = {"x-functions-key": "master-key"}
        assert _admit("POST", "/api/admin-only/purge", master) == Admitted("purge_all", {})

    def test_an_anonymous_route_wants_no_key(self) -> None:
        assert _admit("GET", "/api/health") == Admitted("health", {})

    def test_a_missing_route_is_404_even_without_a_key(self) -> None:
        """Routing comes first: the key is checked for the function a route found."""
        assert _admit("GET", "/api/backups/web-01") == Refused(404)

    def test_fresh_keys_differ_and_are_long(self) -> None:
        first, second = Keys(), Keys()
        assert len({first.function, first.master, second.function, second.master}) == 4
        assert min(len(first.function), len(first.master)) >= 50


class TestTemplates:
    """Templates the host would not index are refused when the app is loaded."""

    @pytest.mark.parametrize(
        "template",
        ["items/{n:nosuch}", "items/{a}{b}", "items/{*rest}/more", "items//x", "x/{n:length}"],
        ids=["unknown-constraint", "two-parameters", "catch-all-not-last", "empty", "no-args"],
    )
    def test_a_bad_template_is_a_route_error(self, template: str) -> None:
        with pytest.raises(RouteError):
            parse_template(template)

    def test_an_unknown_auth_level_is_a_route_error(self) -> None:
        with pytest.raises(RouteError, match="authLevel"):
            Route.of("f", _trigger("f", ["GET"], "system-ish"))

    @pytest.mark.parametrize(
        ("template", "accepted", "refused"),
        [
            ("x/{v:minlength(3)}", "abc", "ab"),
            ("x/{v:length(2,3)}", "abc", "abcd"),
            ("x/{v:range(1,9)}", "9", "10"),
            ("x/{v:guid}", "0f8fad5b-d9cb-469f-a165-70867728950e", "not-a-guid"),
            ("x/{v:regex(^[a-z]+-\\d+$)}", "web-01", "web_01"),
            ("x/{v:int:min(1)}", "1", "0"),
            ("x/{v:bool}", "True", "yes"),
        ],
        ids=["minlength", "length-range", "range", "guid", "regex", "chained", "bool"],
    )
    def test_inline_constraints(self, template: str, accepted: str, refused: str) -> None:
        route = Route.of("f", _trigger(template, ["GET"]))
        assert route.match(["x", accepted]) == {"v": accepted}
        assert route.match(["x", refused]) is None
