"""The process's Temporal client, for the API and the worker alike, on stageflow's data converter: the server may
still be starting when they start, so a refused connection is retried."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.runtime import Runtime

from models.settings import Settings
from workflows.converter import DATA_CONVERTER

log = logging.getLogger(__name__)
CONNECT_ATTEMPTS = 60


async def connect(settings: Settings, attempts: int = CONNECT_ATTEMPTS, runtime: Runtime | None = None) -> Client:
    """A client of the configured server and namespace, trying once a second up to `attempts` times; on `runtime`
    (the worker's, which serves its metrics) when one is given, else on the SDK's default runtime."""
    address, namespace = settings.effective_temporal_address, settings.temporal_namespace
    for _ in range(attempts - 1):
        try:
            return await Client.connect(address, namespace=namespace, runtime=runtime, data_converter=DATA_CONVERTER)
        except RuntimeError as error:  # the SDK reports a failed connection as RuntimeError
            log.warning("Temporal at %s is not reachable yet (%s); retrying", address, error)
            await asyncio.sleep(1.0)
    return await Client.connect(address, namespace=namespace, runtime=runtime, data_converter=DATA_CONVERTER)
