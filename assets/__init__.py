"""Thin Dagster asset definitions over transforms/, their pandera asset checks, and the
partitions and resources they use."""
