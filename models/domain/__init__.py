"""The pure domain: placeholders, delays and the calendar, conditions, requisites, the automation config models,
and what every rule and trigger type is, with the validation of a whole automation. No I/O: the workflows, the
activities and the API all import it."""
