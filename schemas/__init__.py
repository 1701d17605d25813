"""Data contracts: the dataset registry, the Arrow schema and pandera checks of every dataset,
and the source DDL."""
