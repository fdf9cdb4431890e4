"""backupdr: automated backup and disaster recovery for Azure VMs (the Function App's package)."""
