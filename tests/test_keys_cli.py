"""`rapport keys create --role` and `keys list` against a real store; a key's role limits
what it may do on the management API."""

from __future__ import annotations

from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.store.migrate import upgrade


def test_create_a_viewer_key_and_list_it(engine, client) -> None:  # type: ignore[no-untyped-def]
    upgrade(engine)
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    made = runner.invoke(
        cli,
        [
            "keys",
            "create",
            "--kind",
            "secret",
            "--role",
            "viewer",
            "--name",
            "wallboard",
            "--database-url",
            url,
        ],
    )
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    listed = runner.invoke(cli, ["keys", "list", "--database-url", url])
    assert "viewer" in listed.output and "wallboard" in listed.output
    auth = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/segments", headers=auth).status_code == 200
    assert client.post("/api/segments", headers=auth, json={"name": "x"}).status_code == 403


def test_bad_roles_are_refused(engine) -> None:  # type: ignore[no-untyped-def]
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    bad = runner.invoke(
        cli, ["keys", "create", "--kind", "secret", "--role", "boss", "--database-url", url]
    )
    assert bad.exit_code == 2 and "role" in bad.output
    write = runner.invoke(
        cli, ["keys", "create", "--kind", "write", "--role", "viewer", "--database-url", url]
    )
    assert write.exit_code == 2 and "write key" in write.output
