"""The Dagster assets: the day step of every dataset, the month copies, the published-files
checks, and the partitions and resources they use (thin: the work is in transforms/,
source/ and io_managers/)."""
