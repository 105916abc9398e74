"""All routers of the API, one module per resource."""

from fastapi import APIRouter

from api.routes import (
    activities,
    api_keys,
    automation,
    callbacks,
    channels,
    document_templates,
    documents,
    failures,
    health,
    hooks,
    items,
    messages,
    metrics,
    notifications,
    parties,
    pipelines,
    public,
    rule_types,
    settings,
    signing,
    simulations,
    stripe,
    tasks,
    timeline,
    tracking,
    users,
)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(metrics.router)
api_router.include_router(users.router)
api_router.include_router(api_keys.router)
api_router.include_router(pipelines.router)
api_router.include_router(automation.router)
api_router.include_router(rule_types.router)
api_router.include_router(settings.router)
api_router.include_router(parties.contacts)
api_router.include_router(parties.companies)
api_router.include_router(items.deals)
api_router.include_router(items.leads)
api_router.include_router(timeline.router)
api_router.include_router(tasks.router)
api_router.include_router(activities.router)
api_router.include_router(notifications.router)
api_router.include_router(messages.router)
api_router.include_router(documents.router)
api_router.include_router(document_templates.router)
api_router.include_router(public.router)
api_router.include_router(signing.router)
api_router.include_router(tracking.router)
api_router.include_router(hooks.router)
api_router.include_router(callbacks.router)
api_router.include_router(simulations.router)
api_router.include_router(failures.router)
api_router.include_router(stripe.router)
api_router.include_router(channels.router)
