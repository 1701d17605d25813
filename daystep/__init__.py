"""The day step without Dagster: one tenant-day from raw source chunks to every dated dataset,
handed chunk by chunk to a sink (the staged writer of a materialisation, or an in-memory
collector for the read API's source fallback). The day asset, the read API and the benchmarks
all run this one sequence, so a day computed anywhere equals the published one.
"""
