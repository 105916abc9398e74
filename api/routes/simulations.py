"""What-if simulations: months of a pipeline's automation for a sample item (`POST /simulations`) or for an item
that exists (`POST /deals/{id}/simulate`, leads alike), on the real workflow code, touching nothing real."""

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, status

from api.deps import MAX_ID, SessionDep, admin_only
from api.errors import Problems, field_error, not_found
from api.lookups import stages_of
from api.simulation.documents import read_simulated_document
from api.simulation.plan import plan_steps, sample_plan, simulator
from api.simulation.runner import Plan, SimulationsBusy
from api.simulation.schemas import ItemSimulate, SimulationCreate
from api.usecases.automation import checked_automation, current_automation
from api.usecases.items import get_item
from models.tables import Pipeline

log = logging.getLogger("stageflow.simulation")
router = APIRouter(tags=["simulations"], dependencies=admin_only)
SimulationId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
DocumentId = Annotated[int, Path(ge=1, le=MAX_ID)]


async def _run(request: Request, plan: Plan) -> dict[str, Any]:
    try:
        return await simulator(request).run(plan)
    except SimulationsBusy as busy:
        raise HTTPException(status_code=status.HTTP_429_TOO_MANY_REQUESTS, detail=str(busy)) from busy


@router.post("/simulations", response_model=dict[str, Any])
async def simulate(body: SimulationCreate, session: SessionDep, request: Request):
    """What the pipeline's automation (saved, or the draft given) would do to a sample item over the horizon,
    with the script's events at their times. Nothing is sent and nothing real is written."""
    pipeline = session.get(Pipeline, body.pipeline_id)
    if pipeline is None:
        raise field_error(("body", "pipeline_id"), f"pipeline {body.pipeline_id} does not exist")
    settings = request.app.state.settings
    if body.automation is not None:
        config = checked_automation(session, pipeline, settings, body.automation, where=("body", "automation"))
    else:
        config = current_automation(session, pipeline.id)
    plan = sample_plan(session, pipeline, body.item, body, config, draft=body.automation is not None)
    return await _run(request, plan)


def _item_simulate(entity: Literal["deal", "lead"]):
    ItemId = Annotated[int, Path(alias=f"{entity}_id", ge=1, le=MAX_ID)]

    async def simulate_item(item_id: ItemId, body: ItemSimulate, session: SessionDep, request: Request):
        """What will happen to the item from its current stage and data: its entry goes on (what its rules did
        stays done, delays count from when it entered), with the script's events at their times."""
        item = get_item(session, entity, item_id)
        if item.stage is None:
            raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=f"{entity} {item_id} has not entered a stage yet")
        pipeline = session.get(Pipeline, item.pipeline_id)
        config = current_automation(session, pipeline.id)
        problems = Problems()
        steps, horizon = plan_steps(session, problems, body, [s.code for s in stages_of(session, pipeline.id)], config)
        problems.raise_if_any()
        plan = Plan(
            pipeline_id=pipeline.id, entity=entity, stage=item.stage, steps=steps, horizon=horizon,
            webhooks=body.webhooks, item_id=item.id,
        )
        return await _run(request, plan)

    simulate_item.__name__ = f"simulate_{entity}"
    return simulate_item


router.add_api_route(
    "/deals/{deal_id}/simulate", _item_simulate("deal"), methods=["POST"], response_model=dict[str, Any],
    name="simulate_deal",
)
router.add_api_route(
    "/leads/{lead_id}/simulate", _item_simulate("lead"), methods=["POST"], response_model=dict[str, Any],
    name="simulate_lead",
)


@router.get("/simulations/{simulation_id}", response_model=dict[str, Any])
def read_simulation(simulation_id: SimulationId, request: Request):
    """A simulation's answer, while it is kept (`STAGEFLOW_SIMULATION_KEEP_MINUTES`)."""
    answer = simulator(request).answer(simulation_id)
    if answer is None:
        raise not_found("Simulation", simulation_id)
    return answer


@router.get("/simulations/{simulation_id}/documents/{document_id}/{kind}")
def simulated_document(
    simulation_id: SimulationId, document_id: DocumentId, kind: Literal["pdf", "docx"], request: Request
):
    """A document a simulation rendered, as the client would have got it."""
    return read_simulated_document(simulator(request), simulation_id, kind, document_id=document_id)


SharedToken = Annotated[str, Path(min_length=8, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]


@router.get("/simulations/{simulation_id}/public/documents/{token}")
def simulated_shared_document(simulation_id: SimulationId, token: SharedToken, request: Request):
    """The PDF behind a public document link a simulation handed out (in a simulated e-mail, say): the simulation's
    own document, never a real one."""
    return read_simulated_document(simulator(request), simulation_id, "pdf", token=token)


@router.get("/simulations/{simulation_id}/public/documents/{token}/{kind}")
def simulated_shared_document_file(
    simulation_id: SimulationId, token: SharedToken, kind: Literal["pdf", "docx"], request: Request
):
    """The PDF or DOCX behind a public document link a simulation handed out."""
    return read_simulated_document(simulator(request), simulation_id, kind, token=token)
