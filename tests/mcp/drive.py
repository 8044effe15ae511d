"""Drives taskflow-mcp with the official MCP Python SDK (`mcp` from PyPI), as
an assistant's client would, and prints one JSON report on stdout for the
Rust test (tests/tests/mcp.rs) to check. It asserts nothing itself: every
outcome is reported, and the Rust side decides.

Input: a JSON object on stdin:
  transport         "stdio" or "http"
  command, env      stdio: the server binary and its environment, minus the token
  url               http: the server's /mcp endpoint
  tokens            {"full": ..., "read_only": ..., "revocable": ...}
  api_url, login    the API and the user's login token (to revoke "revocable")
  revocable_id      the id of the revocable token
  foreign_task_id   a task of another user

For stdio each token gets its own server process (the process acts as one
user, from TASKFLOW_MCP_TOKEN); for HTTP each token is the bearer token of
its own client session against the one server.
"""

import asyncio
import contextlib
import json
import sys
import urllib.request

from jsonschema import Draft202012Validator
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


@contextlib.asynccontextmanager
async def session_for(cfg, token):
    if cfg["transport"] == "stdio":
        env = dict(cfg["env"])
        env["TASKFLOW_MCP_TOKEN"] = token
        params = StdioServerParameters(command=cfg["command"], env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                yield session
    else:
        headers = {"Authorization": f"Bearer {token}"}
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(cfg["url"], http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    yield session


def outcome(result):
    text = "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": text,
    }


async def call(session, tool, args):
    try:
        return outcome(await session.call_tool(tool, args))
    except Exception as e:  # reported, not raised: the Rust side judges
        return {"exception": f"{type(e).__name__}: {e}"}


def revoke(cfg):
    req = urllib.request.Request(
        f"{cfg['api_url']}/tokens/{cfg['revocable_id']}",
        method="DELETE",
        headers={"Authorization": f"Bearer {cfg['login']}"},
    )
    with urllib.request.urlopen(req) as resp:
        return resp.status


async def main():
    cfg = json.load(sys.stdin)
    report = {}
    tokens = cfg["tokens"]

    async with session_for(cfg, tokens["full"]) as s:
        init = await s.initialize()
        report["server_name"] = init.server_info.name
        tools = (await s.list_tools()).tools
        listed = []
        for t in tools:
            entry = {"name": t.name, "description": t.description or ""}
            for key, schema in (("input", t.input_schema), ("output", t.output_schema)):
                try:
                    Draft202012Validator.check_schema(schema)
                    entry[key] = "valid" if schema and schema.get("type") else "missing"
                except Exception as e:
                    entry[key] = f"invalid: {e}"
            entry["input_schema"] = t.input_schema
            listed.append(entry)
        report["tools"] = listed

        steps = report.setdefault("steps", {})
        steps["create"] = await call(s, "create_task", {
            "title": "Water the plants via MCP",
            "due_at": "2026-12-01T09:00:00+01:00",
            "priority": "high",
            "tags": ["mcp", "home"],
            "reminders": [{"before": "PT15M"}],
        })
        created = (steps["create"].get("structured") or {})
        task_id = created.get("id", "00000000-0000-0000-0000-000000000000")
        report["task_id"] = task_id
        steps["create_invalid"] = await call(s, "create_task", {
            "title": " ", "due_at": "2026-12-01T09:00:00", "colour": "red",
        })
        steps["list"] = await call(s, "list_tasks", {"tag": ["mcp"], "status": "open", "limit": 10})
        steps["list_invalid"] = await call(s, "list_tasks", {"limit": 0, "priority": "whenever"})
        steps["get"] = await call(s, "get_task", {"id": task_id})
        steps["update"] = await call(s, "update_task", {
            "id": task_id, "if_version": 1, "priority": "low", "description": "changed by MCP",
        })
        steps["update_stale"] = await call(s, "update_task", {
            "id": task_id, "if_version": 1, "title": "too late",
        })
        steps["complete"] = await call(s, "complete_task", {"id": task_id})
        steps["complete_again"] = await call(s, "complete_task", {"id": task_id})
        steps["reopen"] = await call(s, "reopen_task", {"id": task_id})
        reopened = steps["reopen"].get("structured") or {}
        reminder_id = ((reopened.get("reminders") or [{}])[0]).get(
            "id", "00000000-0000-0000-0000-000000000000")
        steps["snooze"] = await call(s, "snooze_reminder", {
            "id": task_id, "reminder_id": reminder_id, "for": "PT10M",
        })
        steps["snooze_invalid"] = await call(s, "snooze_reminder", {
            "id": task_id, "reminder_id": reminder_id, "for": "ten minutes",
        })
        steps["preview"] = await call(s, "preview_recurrence", {
            "rrule": "FREQ=WEEKLY;BYDAY=MO", "tz": "Europe/Berlin",
            "start": "2026-10-19T09:00:00+02:00", "count": 3,
        })
        steps["preview_invalid"] = await call(s, "preview_recurrence", {
            "rrule": "FREQ=SOMETIMES", "tz": "Mars/Olympus_Mons",
        })
        steps["notifications"] = await call(s, "list_notifications", {"limit": 10})
        steps["mark_read"] = await call(s, "mark_notification_read", {"id": cfg["notification_id"]})
        steps["mark_read_foreign"] = await call(s, "mark_notification_read", {"id": cfg["foreign_task_id"]})
        steps["foreign_get"] = await call(s, "get_task", {"id": cfg["foreign_task_id"]})
        steps["foreign_complete"] = await call(s, "complete_task", {"id": cfg["foreign_task_id"]})
        steps["bad_id"] = await call(s, "get_task", {"id": "../auth/login"})
        resources = await s.list_resources()
        report["resources"] = [r.uri for r in resources.resources]
        contents = await s.read_resource("taskflow://tasks/open")
        report["open_tasks"] = json.loads(contents.contents[0].text)
        steps["delete"] = await call(s, "delete_task", {"id": task_id})
        steps["get_deleted"] = await call(s, "get_task", {"id": task_id})
        # A second task stays, for the Rust side to find through the API.
        steps["create_kept"] = await call(s, "create_task", {"title": "Kept from MCP"})

    async with session_for(cfg, tokens["read_only"]) as s:
        await s.initialize()
        steps["read_only_create"] = await call(s, "create_task", {"title": "not allowed"})
        steps["read_only_list"] = await call(s, "list_tasks", {})

    async with session_for(cfg, tokens["revocable"]) as s:
        await s.initialize()
        steps["before_revoke"] = await call(s, "list_tasks", {})
        report["revoke_status"] = revoke(cfg)
        steps["after_revoke"] = await call(s, "list_tasks", {})

    json.dump(report, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
