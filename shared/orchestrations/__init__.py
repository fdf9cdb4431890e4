"""Durable orchestrator generators: the workflows. Deterministic; they only yield durable calls."""
