"""Long-running benchmarks and chaos runs over the whole local stack (not the test suite)."""
