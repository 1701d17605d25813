"""Thin Dagster asset definitions over transforms/, and their pandera asset checks."""
