"""A local SMTP server that keeps every message it receives as an .eml file.

    python scripts/smtp_sink.py --port 8025 --dir data/mail

Each accepted message is written to ``<dir>/<UTC time>-<random>.eml`` (written
to a temporary name first, then renamed, so a reader never sees half a file)
with ``Return-Path`` and ``X-Original-To`` headers recording the SMTP envelope,
and one line per message is logged. Nothing is ever relayed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import uuid
from datetime import datetime, timezone
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("smtp_sink")


class MailDirHandler:
    """aiosmtpd handler storing each message under ``directory``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        envelope_headers = (
            f"Return-Path: <{envelope.mail_from or ''}>\r\n"
            f"X-Original-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("utf-8", "replace")
        path = self.store(envelope_headers + content)
        subject = message_from_bytes(content, policy=default_policy).get("Subject", "")
        log.info(
            "mail from=%s to=%s subject=%r bytes=%d file=%s",
            envelope.mail_from,
            ",".join(envelope.rcpt_tos),
            str(subject),
            len(content),
            path,
        )
        return "250 Message accepted for delivery"

    def store(self, data: bytes) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        final = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        partial = final.with_suffix(".eml.part")
        with open(partial, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, final)
        return final


async def serve(host: str, port: int, directory: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = MailDirHandler(directory)
    server = await loop.create_server(lambda: SMTP(handler, hostname="stageflow-smtp-sink"), host=host, port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("SMTP sink listening on %s:%d, storing messages in %s", host, port, directory)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local SMTP sink storing every message as an .eml file.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", default="data/mail", help="directory for the .eml files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(args.host, args.port, Path(args.dir)))
    except OSError as exc:
        log.error("SMTP sink cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
