"""Stand-ins for Azure used by tests, the demo and the CLI's simulator target."""
