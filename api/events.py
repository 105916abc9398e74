"""Events that come from a client's actions on public links: sent once, and recorded on the item's timeline."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.service import RPCError

from models.settings import Settings
from models.tables import Item, TimelineEntry
from workflows import client as workflow_client

log = logging.getLogger(__name__)


async def send_once(
    session: Session,
    client: Client,
    settings: Settings,
    item_id: int | None,
    *,
    key: str,
    event_type: str,
    data: dict[str, Any],
    text: str,
) -> None:
    """Send `event_type` to the item unless the timeline already holds `key`; then record it there.

    A visitor's page must load even when the workflow service is down: a failed send is logged and
    not recorded, so the next visit sends it again.
    """
    if item_id is None or session.exec(select(TimelineEntry.id).where(TimelineEntry.key == key)).first():
        return
    item = session.get(Item, item_id)
    if item is None or item.stage is None:
        return
    try:
        await workflow_client.send_event(client, settings, item, event_type, data, event_id=key)
    except RPCError as error:
        log.warning("could not send %s to %s %s: %s", event_type, item.entity_type, item.id, error)
        return
    session.add(TimelineEntry(item_id=item.id, kind=event_type, text=text, key=key, entry_no=item.entry_no, data=data))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
