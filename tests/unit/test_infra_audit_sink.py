"""The audit log's copy in Application Insights is out of the app's reach: its identity may send
telemetry (Monitoring Metrics Publisher) and nothing else there, and no key can write in its
name. The catalog's `auditlog` table is the app's to write (Table Data Contributor), so this copy
is the one an investigation can trust."""

from __future__ import annotations

from typing import Any

from local import bicep

RBAC_DATA = "app/rbac-data.bicep"
MONITORING_NAMESPACES = ("microsoft.insights/", "microsoft.operationalinsights/", "*")


def _role_of(assignment: dict[str, Any]) -> str:
    function = assignment["properties"]["roleDefinitionId"]["function"]
    return str(function["parameters"]["resource_name_1"])


def test_the_apps_only_role_on_application_insights_is_to_publish() -> None:
    on_insights = [
        (file, _role_of(config))
        for file, _, config in bicep.resources("Microsoft.Authorization/roleAssignments")
        if config.get("scope") == "applicationInsights"
    ]
    assert on_insights == [(RBAC_DATA, "monitoringMetricsPublisher")]
    assert bicep.variable(RBAC_DATA, "monitoringMetricsPublisher") == (
        "3913510d-42f4-4e42-8a64-420c390055eb"  # the built-in Monitoring Metrics Publisher
    )


def test_no_custom_role_reaches_monitoring_data() -> None:
    granted = [
        (name, action)
        for _, name, config in bicep.resources("Microsoft.Authorization/roleDefinitions")
        for permission in config["properties"]["permissions"]
        for action in permission["actions"] + permission.get("dataActions", [])
        if action.lower().startswith(MONITORING_NAMESPACES)
    ]
    assert granted == []


def test_application_insights_takes_no_instrumentation_key() -> None:
    component = bicep.template("app/monitoring.bicep")["resources"]["applicationInsights"]
    assert component["config"]["properties"]["DisableLocalAuth"] is True
