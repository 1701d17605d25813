"""The demo's synthetic plants (also the tests' and benchmarks' data) and what the demo shows."""
