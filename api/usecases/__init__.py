"""Every change to an item, a task, a document or an automation, each written once.

The HTTP routes, the console's pages and simulations are adapters over these: they parse their input, call one
function here and render its answer. So the API and the console refuse the same input with the same check, honour
the same `Idempotency-Key`, and write the same rows; and only these modules talk to the item workflows
(`workflows.client`). A refusal is an `HTTPException` in FastAPI's shape, its `detail` naming the field at fault.
"""
