"""The automation console at `/ui/`: server-rendered pages on the same use cases as the JSON API.

Pipelines and their stages (`pipelines`), each pipeline as a board of stages with their rules and triggers
(`automation`), deals and leads as boards to drag across stages and each item's page (`items`), what-if simulations
(`simulation`), failed rules and their bulk retry (`failures`), the CRM's users (`people`), the contacts deals are
for (`clients`), signing in (`signin`); what the pages share is in `pages`.
"""

from fastapi import APIRouter

from api.console import automation, clients, failures, items, people, pipelines, signin, simulation
from api.console.pages import STATIC

router = APIRouter(prefix="/ui", include_in_schema=False)
for part in (signin, pipelines, automation, items, simulation, failures, people, clients):
    router.include_router(part.router)

__all__ = ["STATIC", "router"]
