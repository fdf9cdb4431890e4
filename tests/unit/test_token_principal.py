"""Who a token stands for, read from Entra's claims for the audit log."""

from __future__ import annotations

import pytest

from shared.adapters.credentials import local_token, principal_of


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param(
            {"oid": "o-1", "upn": "alice@contoso.example", "appid": "az-cli"},
            "user alice@contoso.example (object id o-1)",
            id="a user, not the app they signed in with",
        ),
        pytest.param(
            {"oid": "o-2", "unique_name": "live.com#bob@example.com"},
            "user live.com#bob@example.com (object id o-2)",
            id="a guest user (no upn)",
        ),
        pytest.param(
            {"oid": "o-3", "appid": "c-3", "idtyp": "app"},
            "app c-3 (object id o-3)",
            id="a managed identity or service principal (v1, as ARM's tokens are)",
        ),
        pytest.param({"oid": "o-4", "azp": "c-4"}, "app c-4 (object id o-4)", id="v2 app"),
    ],
)
def test_a_token_names_its_principal(claims: dict[str, str], expected: str) -> None:
    assert principal_of(local_token(**claims)) == expected


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("opaque-token", id="no parts"),
        pytest.param("a.!!!.c", id="claims not base64 JSON"),
        pytest.param("e30.WzFd.", id="claims a JSON list"),
    ],
)
def test_a_token_that_is_not_a_jwt_is_refused_with_a_reason(token: str) -> None:
    with pytest.raises(ValueError, match=r"not a JWT|not a JSON object"):
        principal_of(token)
