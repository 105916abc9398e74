"""The pure domain: placeholders, delays and the calendar, conditions, requisites, the automation config models,
and what every rule and trigger type is, with the validation of a whole automation. No I/O, and no import of
any layer above: every other part of stageflow may import it."""
