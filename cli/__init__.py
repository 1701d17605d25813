"""The `tagflow` command line (DESIGN §7): demo, materialize, backfill, compact, serve, keys
and derived."""
