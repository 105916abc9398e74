"""GET /metrics: the API's Prometheus metrics (text format). No key needed unless `STAGEFLOW_METRICS_KEY` is set;
then `Authorization: Bearer <that key>` is."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import SettingsDep, bearer

router = APIRouter(tags=["service"])


@router.get("/metrics", include_in_schema=False)
def metrics(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    wanted = settings.metrics_key.get_secret_value() if settings.metrics_key is not None else ""
    if wanted:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), wanted.encode()):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED, detail="GET /metrics needs the metrics key",
                headers={"WWW-Authenticate": "Bearer"},
            )
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
