"""The pages people without a key see (a public document, a signing link): Jinja2 templates in `templates/pages/`,
escaped as HTML."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "pages"
pages = Jinja2Templates(directory=TEMPLATES)
