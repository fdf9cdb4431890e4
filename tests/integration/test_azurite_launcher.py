"""The Azurite launcher gives tests a real table service and cleans up after itself."""

from azure.data.tables import TableServiceClient

from local.azurite import Azurite


def test_azurite_serves_tables_on_its_connection_string(azurite: Azurite) -> None:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table = service.create_table_if_not_exists("launchercheck")
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "value": 1})
    assert table.get_entity("p", "r")["value"] == 1
    service.delete_table("launchercheck")
