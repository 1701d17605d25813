"""The Dagster code location: definitions, jobs, schedules, sensors, executor and instance
configuration."""
