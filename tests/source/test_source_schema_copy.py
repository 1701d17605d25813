"""The packaged DDL is the shared contract's DDL, byte for byte."""

from pathlib import Path

import pytest

from tagflow.schemas.source_ddl import source_schema_sql

SHARED_DDL = Path(__file__).resolve().parents[3] / "shared" / "source_schema.sql"


@pytest.mark.skipif(not SHARED_DDL.is_file(), reason="../shared is not beside this checkout")
def test_packaged_ddl_equals_shared_source_schema():
    assert source_schema_sql() == SHARED_DDL.read_text()
