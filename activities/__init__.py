"""The activities layer: the engine's steps (`engine/`), the rule types by group (`rules/`, with the registry),
what a rule's `run` works with (`rule`), the services rules share, and the transports they reach the outside by."""
