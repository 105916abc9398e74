"""The documents a simulation rendered, read from its kept scratch database while the simulation is kept: by their
id, or by the public link a simulated rule handed out (`/simulations/{id}/public/documents/{token}`)."""

from __future__ import annotations

from fastapi import HTTPException, Response, status
from sqlmodel import Session, select

from api.errors import not_found
from api.files import document_file
from api.simulation.runner import Simulator
from api.usecases.documents import GONE, get_document
from models.tables import Document


def read_simulated_document(
    simulator: Simulator, simulation_id: str, kind: str, *, document_id: int | None = None, token: str | None = None
) -> Response:
    """A document of a simulation, its PDF or DOCX (`kind`), as the client would have got it: by its id in the
    simulation, or by the token of the public link the simulation handed out."""
    engine = simulator.scratch(simulation_id)
    if engine is None:
        raise not_found("Simulation", simulation_id)
    try:
        with Session(engine) as session:
            if document_id is not None:
                document = get_document(session, document_id)
            else:
                document = session.exec(select(Document).where(Document.public_token == token)).first()
                if document is None:
                    raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=GONE)
            return document_file(document, kind, inline=True)
    finally:
        engine.dispose()
