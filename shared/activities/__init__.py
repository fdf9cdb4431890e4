"""One function per workflow step; each is idempotent and talks to the ports only."""
