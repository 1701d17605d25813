"""The query engine: answers a query for one tenant from the stored datasets, computing days not
materialised from the source with the assets' own day chain."""
