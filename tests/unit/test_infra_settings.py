"""The Function App in infra/ gets every app setting the code reads, and no secret."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from pycep import BicepParser

from shared.adapters.catalog import TABLES
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Local-only settings: Azure sets the runtime itself and the app uses identity-based storage.
LOCAL_ONLY = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "BACKUPDR_TABLES_CONNECTION"}
IDENTITY_BASED = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}


@functools.cache
def parse(relative: str) -> dict[str, Any]:
    return dict(BicepParser(cache=False).parse(file_path=ROOT / "infra" / relative))


def deployed_settings() -> dict[str, Any]:
    """App settings as written in the templates: a name, a literal or an expression tree."""
    app = dict(parse("main.bicep")["modules"]["function"]["config"]["params"]["appSettings"])
    platform = dict(parse("app/function.bicep")["variables"]["platformSettings"]["value"])
    assert not set(app) & set(platform), "a setting is defined twice"
    return app | platform


def resolve(value: Any, template: dict[str, Any]) -> str:
    """A main.bicep value with parameter defaults and variables filled in; "computed" for
    what only Azure knows at deployment (ids, endpoints)."""
    if isinstance(value, dict):
        function = value.get("function", {})
        if function.get("type") == "string":
            return resolve(function["parameters"]["value_to_convert"], template)
        return "computed"
    text = str(value)
    if text in template["parameters"]:
        return str(template["parameters"][text].get("default", "computed"))
    if text in template["variables"]:
        return resolve(template["variables"][text]["value"], template)
    return re.sub(r"\$\{(\w+)\}", lambda m: resolve(m.group(1), template), text)


def main_env() -> dict[str, str]:
    """The values main.bicep gives the app with its default parameters."""
    main = parse("main.bicep")
    settings = main["modules"]["function"]["config"]["params"]["appSettings"]
    return {key: resolve(value, main) for key, value in settings.items()}


def test_every_setting_the_local_example_has_is_deployed() -> None:
    local = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert set(local) - LOCAL_ONLY <= set(deployed_settings())


def test_storage_and_telemetry_connect_with_the_managed_identity() -> None:
    settings = deployed_settings()
    assert set(settings) >= IDENTITY_BASED
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith(";Authorization=AAD")
    assert not set(settings) & LOCAL_ONLY


def test_no_setting_carries_a_key_or_signature() -> None:
    text = json.dumps(deployed_settings()).lower()
    for secret_marker in ("accountkey", "sharedaccesssignature", "sig=", "password"):
        assert secret_marker not in text


def test_deployed_settings_are_ones_the_app_accepts() -> None:
    settings = Settings.from_env(main_env())
    assert settings.credential == "managed-identity"
    assert settings.tables_connection is None
    assert settings.tables_account_url == "computed"
    assert settings.backup_group("eastus") == "rg-backups-eastus"
    assert settings.drtest_group("westus2") == "rg-backupdr-drtest-westus2"
    assert settings.drtest_subnet == "vnet-backupdr-drtest/snet-restore"
    assert settings.recovery_group("westus2") == "rg-backupdr-recovery-westus2"
    assert settings.recovery_subnet == "vnet-backupdr-recovery/snet-recovery"
    assert settings.manual_limit_per_hour == 4


def test_timer_schedules_default_to_the_local_example() -> None:
    local = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    deployed = main_env()
    schedules = [key for key in local if key.endswith("_SCHEDULE")]
    assert schedules
    assert {k: deployed[k] for k in schedules} == {k: local[k] for k in schedules}


def test_infra_creates_every_catalog_table() -> None:
    # The app's role has data rights only: a table infra does not create, the app cannot use.
    created = parse("app/storage.bicep")["variables"]["catalogTables"]["value"]
    assert sorted(created) == sorted(TABLES)
