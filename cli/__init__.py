"""The `tagflow` command line: demo, materialize, backfill, serve and keys (DESIGN §7)."""
