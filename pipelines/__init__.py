"""Dagster wiring (partitions, resources, definitions) and the `tagflow` command line."""
