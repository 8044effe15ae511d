"""A real SMTP server for Taskflow's tests: `aiosmtpd` (PyPI), recording every message.

Environment:
  REFUSE_FIRST  refuse this many messages first (default 0)
  REFUSE_WITH   the refusal: `451 4.3.0 Try again later` (default) or e.g.
                `550 5.1.1 No such user`

Prints `PORT <n>` once listening on 127.0.0.1, then one JSON line per message received:
  {"status", "mail_from", "rcpt_tos", "from", "to", "subject", "message_id",
   "parts": [{"content_type", "body"}, ...]}
`status` is the reply code the server gave; only 250 means the mail was accepted.
"""

import asyncio
import email
import email.policy
import json
import os
import sys

from aiosmtpd.smtp import SMTP

state = {
    "refuse_first": int(os.environ.get("REFUSE_FIRST", "0")),
    "refuse_with": os.environ.get("REFUSE_WITH", "451 4.3.0 Try again later"),
    "seen": 0,
}


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class Handler:
    async def handle_DATA(self, server, session, envelope):
        state["seen"] += 1
        refuse = state["seen"] <= state["refuse_first"]
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append(
                {"content_type": part.get_content_type(), "body": part.get_content()}
            )
        emit(
            {
                "status": int(state["refuse_with"][:3]) if refuse else 250,
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "from": str(msg["From"]),
                "to": str(msg["To"]),
                "subject": str(msg["Subject"]),
                "message_id": str(msg["Message-ID"]),
                "content_type": msg.get_content_type(),
                "parts": parts,
            }
        )
        if refuse:
            return state["refuse_with"]
        return "250 OK"


async def main():
    loop = asyncio.get_running_loop()
    handler = Handler()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="taskflow-test-smtp"), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
