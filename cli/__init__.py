"""The backupdr command line."""
