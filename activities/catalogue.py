"""The catalogue the workflows dispatch on: each rule type's activity `rule.<type>` runs this effect."""

from __future__ import annotations

from activities import communication, custom, documents, helpers, monitoring, sales, variables
from activities.engine import Handler

HANDLERS: dict[str, Handler] = {
    "add_timeline_entry": monitoring.add_timeline_entry,
    "notify_employee": monitoring.notify_employee,
    "notify_supervisor": monitoring.notify_supervisor,
    "change_stage": helpers.change_stage,
    "change_responsible": helpers.change_responsible,
    "update_fields": helpers.update_fields,
    "create_document": documents.create_document,
    "send_for_signature": documents.send_for_signature,
    "change_requisites": documents.change_requisites,
    "get_requisites": documents.get_requisites,
    "create_task": monitoring.create_task,
    "complete_tasks": monitoring.complete_tasks,
    "schedule_activity": monitoring.schedule_activity,
    "create_repeat_lead": sales.create_repeat_lead,
    "copy_deal": sales.copy_deal,
    "send_email": communication.send_email,
    "send_sms": communication.send_sms,
    "edit_variable": variables.edit_variable,
    "math_operation": variables.math_operation,
    "wait": variables.wait,
    "webhook": custom.webhook,
    "custom": custom.custom,
}
