"""How many rows each stage of a tenant-day takes at once, in one place.

Every size is a multiple of CHUNK_ROWS, the source chunk, except the compute chunk, which
counts work (transitions plus 1-minute buckets), not rows. The sizes bound memory, and they
also decide where a day file's Parquet row groups are cut: changing one changes the files'
bytes and publish ids. They are constants, not environment settings, so that every machine
writes the same files for the same source.
"""

# Source rows fetched, resolved and computed as one chunk: 125 K kept the whole day step under
# 0.7 GiB at 10 M rows (500 K: 1.4 GiB) and computed no slower.
CHUNK_ROWS = 125_000
# Rows of one dataset audited and written at once: the audit's fixed cost per call (about
# 15 ms) is paid once per this many rows, and memory holds at most this many per dataset.
WRITE_BATCH_ROWS = 2 * CHUNK_ROWS
# Rows of derived tags' inputs evaluated at once: about what a chunk holds, so derived tags
# add no more memory than a chunk of source tags does.
DERIVED_BATCH_ROWS = 2 * CHUNK_ROWS
# Rows gathered from a month's days before one write of its month copy (about 50 MB; two are
# held at once: one gathered while the one before is encoded).
COPY_BATCH_ROWS = 4 * CHUNK_ROWS
# Work of one compute chunk (each transition counts one, each tag a day of buckets): its
# temporaries stay small, so memory is reused, and two chunks run on two cores.
WORK_PER_CHUNK = 1 << 19
