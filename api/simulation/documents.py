"""The documents a simulation rendered, read from its kept scratch database while the simulation is kept."""

from __future__ import annotations

from fastapi import Response
from sqlmodel import Session

from api.errors import not_found
from api.files import document_file
from api.simulation.runner import Simulator
from api.usecases.documents import get_document


def read_simulated_document(simulator: Simulator, simulation_id: str, document_id: int, kind: str) -> Response:
    """A document a simulation rendered, its PDF or DOCX (`kind`), as the client would have got it."""
    engine = simulator.scratch(simulation_id)
    if engine is None:
        raise not_found("Simulation", simulation_id)
    try:
        with Session(engine) as session:
            return document_file(get_document(session, document_id), kind, inline=True)
    finally:
        engine.dispose()
