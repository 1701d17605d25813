"""The PostgreSQL source reader: tenants, the streamed extract of a day's rows, tags and the
indexed carry-in look-up. It only reads; it never imports dagster."""
