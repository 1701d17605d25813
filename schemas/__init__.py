"""Data contracts: Arrow schemas of every dataset, pandera checks, and the source DDL."""
