"""`tagflow derived check FILE` and `tagflow derived list --tenant T` (DESIGN §7, §8)."""

from __future__ import annotations

import json
import textwrap

import pytest
from psycopg import sql
from typer.testing import CliRunner

from tagflow.cli.app import app
from tests.conftest import unique_tenant_name

GOOD = textwrap.dedent(
    """\
    tenants:
      acme:
        - name: derived/reactor_hot
          expression: '"plant/area1/analog_00008" > 280 and "plant/area6/state_00013" = ''RUNNING'''
          description: reactor above 280 while the line runs
        - name: derived/not_hot
          expression: not "derived/reactor_hot"
      beta:
        - name: derived/flow_total
          expression: flow_a + flow_b
    """
)

SYNTAX_ERROR = textwrap.dedent(
    """\
    tenants:
      acme:
        - name: derived/ok
          expression: temp > 1
      beta:
        - name: derived/bad
          expression: temp > (1
    """
)


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    for variable in ("TAGFLOW_SOURCE_URL", "TAGFLOW_DERIVED_TAGS"):
        monkeypatch.delenv(variable, raising=False)
    return CliRunner()


def write(tmp_path, text: str):
    path = tmp_path / "derived.yaml"
    path.write_text(text)
    return path


def test_check_reports_each_tenant_ok(runner, tmp_path):
    result = runner.invoke(app, ["derived", "check", str(write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert "tenant acme: 2 derived tags OK (names not checked: no source URL)" in result.stdout
    assert "tenant beta: 1 derived tag OK" in result.stdout


def test_check_of_a_syntax_error_exits_2_with_a_clear_message(runner, tmp_path):
    result = runner.invoke(app, ["derived", "check", str(write(tmp_path, SYNTAX_ERROR))])
    assert result.exit_code == 2
    assert "tenant acme: 1 derived tag OK" in result.stdout
    assert (
        "error: tenant 'beta', derived tag 'derived/bad': in its expression, expected ')', "
        "found the end of the expression at column 10"
    ) in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "text,expected",
    [
        ("tenants:\n  acme: [\n", "not valid YAML"),
        (
            "tenants:\n  acme:\n    - {name: a, expression: b}\n    - {name: b, expression: a}\n",
            "derived tags form a cycle: 'a' → 'b' → 'a'",
        ),
        (
            "tenants:\n  acme:\n    - {name: a, expression: x}\n    - {name: a, expression: y}\n",
            "derived tag 'a': is defined twice",
        ),
        (
            "tenants:\n  acme:\n    - {name: a, expression: 'os.system(1)'}\n",
            "'os.system' is not a function",
        ),
    ],
)
def test_check_refuses_bad_files(runner, tmp_path, text, expected):
    result = runner.invoke(app, ["derived", "check", str(write(tmp_path, text))])
    assert result.exit_code == 2
    assert expected in result.stderr


def test_check_of_a_missing_file_exits_2(runner, tmp_path):
    result = runner.invoke(app, ["derived", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "error: the derived tags file could not be read: No such file" in result.stderr


def add_tags(admin_conn, tenant: str, names: list[str]) -> None:
    with admin_conn.cursor() as cur:
        for name in names:
            cur.execute(
                sql.SQL("INSERT INTO {}.tag_names (normalized_name) VALUES (%s)").format(
                    sql.Identifier(tenant)
                ),
                (name,),
            )


def test_check_with_a_source_checks_names_per_tenant(
    runner, tmp_path, monkeypatch, make_tenant, admin_conn, pg_url
):
    """With --source-url each tenant's definitions are checked against its own tag list in
    the source (a real PostgreSQL): a name of another tenant is unknown."""
    acme, beta = make_tenant().name, make_tenant().name
    add_tags(admin_conn, acme, ["plant/area1/analog_00008", "plant/area6/state_00013"])
    add_tags(admin_conn, beta, ["flow_a"])  # flow_b is acme's... and nobody's
    add_tags(admin_conn, acme, ["flow_b"])
    text = GOOD.replace("  acme:", f"  {acme}:").replace("  beta:", f"  {beta}:")
    missing = unique_tenant_name("gone")
    path = write(tmp_path, text + f"  {missing}:\n    - {{name: g, expression: x > 1}}\n")
    result = runner.invoke(app, ["derived", "check", str(path), "--source-url", pg_url])
    assert result.exit_code == 2
    assert f"tenant {acme}: 2 derived tags OK (names checked against the source)" in result.stdout
    assert (
        f"error: tenant '{beta}', derived tag 'derived/flow_total': reads unknown tag 'flow_b'"
    ) in result.stderr
    assert f"error: tenant '{missing}': unknown tenant '{missing}'" in result.stderr
    assert pg_url not in result.output

    # TAGFLOW_SOURCE_URL does the same as --source-url.
    monkeypatch.setenv("TAGFLOW_SOURCE_URL", pg_url)
    result = runner.invoke(app, ["derived", "check", str(write(tmp_path, text))])
    assert "reads unknown tag 'flow_b'" in result.stderr


def test_list_shows_definitions_and_inputs_from_the_setting(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("TAGFLOW_DERIVED_TAGS", str(write(tmp_path, GOOD)))
    result = runner.invoke(app, ["derived", "list", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("derived/reactor_hot  (id -")
    assert (
        '  expression:  "plant/area1/analog_00008" > 280 and '
        "\"plant/area6/state_00013\" = 'RUNNING'"
    ) in lines
    assert "  inputs:      plant/area1/analog_00008, plant/area6/state_00013" in lines
    assert "  description: reactor above 280 while the line runs" in lines
    assert "  inputs:      derived/reactor_hot" in lines

    result = runner.invoke(app, ["derived", "list", "--tenant", "acme", "--json"])
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == ["derived/reactor_hot", "derived/not_hot"]
    assert rows[1]["inputs"] == ["derived/reactor_hot"]
    assert all(row["tag_id"] < 0 for row in rows)


def test_list_of_a_tenant_without_derived_tags(runner, tmp_path):
    path = write(tmp_path, GOOD)
    result = runner.invoke(app, ["derived", "list", "--tenant", "gamma", "--file", str(path)])
    assert result.exit_code == 0
    assert "tenant gamma has no derived tags" in result.stdout


def test_list_without_a_file_is_an_invalid_argument(runner):
    result = runner.invoke(app, ["derived", "list", "--tenant", "acme"])
    assert result.exit_code == 2
    assert "error: no derived tags file: set TAGFLOW_DERIVED_TAGS or pass --file" in result.stderr


def test_list_of_a_broken_tenant_exits_2(runner, tmp_path):
    path = write(tmp_path, SYNTAX_ERROR)
    result = runner.invoke(app, ["derived", "list", "--tenant", "beta", "--file", str(path)])
    assert result.exit_code == 2
    assert "derived tag 'derived/bad': in its expression" in result.stderr
    # Another tenant of the same file still lists.
    result = runner.invoke(app, ["derived", "list", "--tenant", "acme", "--file", str(path)])
    assert result.exit_code == 0
    assert "derived/ok" in result.stdout
