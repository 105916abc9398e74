"""The item and stage-entry workflows (deterministic code only), their payloads (`types`), and the Temporal client
calls that start, move and ask them (`client`)."""
