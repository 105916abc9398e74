"""Outbound webhooks through a real webhook rule, with private addresses not allowed (the default).

Every way of naming a loopback, link-local or private address fails the rule at once, naming the refusal,
and the server listening on loopback gets nothing. The URL checks themselves (redirects, DNS answers mixing
public and private addresses, the connection pinned to the checked address) are tested on the library in
tests/transports/test_net.py; a loopback URL with a plain IP through the rule in tests/custom/test_webhook.py.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.crm import automate, deal, eventually, pipeline, timeline, user
from scripts.local import free_port
from tests.faults.cluster import WebhookTarget
from tests.security.findings import record
from tests.stacks import open_stack, stack_settings


def targets(port: int) -> dict[str, str]:
    return {
        "loopback_ip": f"http://127.0.0.1:{port}/orders",
        "localhost_name": f"http://localhost:{port}/orders",
        "decimal_ip": f"http://2130706433:{port}/orders",
        "ipv6_loopback": f"http://[::1]:{port}/orders",
        "unspecified": f"http://0.0.0.0:{port}/orders",
        "ipv4_mapped_ipv6": f"http://[::ffff:127.0.0.1]:{port}/orders",
        "link_local_metadata": "http://169.254.169.254/latest/meta-data/",
        "private_10": "http://10.1.2.3/orders",
        "private_192_168": "http://192.168.1.1/orders",
    }


async def test_webhook_rules_refuse_loopback_link_local_and_private_addresses(
    dev_env: WorkflowEnvironment, tmp_path: Path
):
    target = WebhookTarget(free_port())
    target.up()
    try:
        async with AsyncExitStack() as exit_stack:
            stack = await open_stack(exit_stack, dev_env, stack_settings(tmp_path, allow_private_urls=False))
            assert stack.settings.allow_private_urls is False
            urls = targets(target.port)
            manager = await user(stack.http, "Manager")
            flow = await pipeline(stack.http, ["NEW"])
            await automate(stack.http, flow["id"], {"NEW": {"rules": [
                {"name": name, "type": "webhook", "settings": {"url": url, "timeout_seconds": 3}}
                for name, url in urls.items()
            ]}})
            item = await deal(stack.http, flow["id"], manager["id"])

            async def outcomes() -> dict[str, dict] | None:
                entries = await timeline(stack.http, item["id"])
                found = {entry["rule_name"]: entry for entry in entries
                         if entry["kind"] in ("rule_failed", "rule_done")}
                return found if set(found) == set(urls) else None

            found = await eventually(outcomes, timeout=60)
    finally:
        target.down()
    kinds = {name: entry["kind"] for name, entry in found.items()}
    assert kinds == {name: "rule_failed" for name in urls}, kinds
    for name, entry in found.items():
        assert "STAGEFLOW_ALLOW_PRIVATE_URLS" in entry["text"], (name, entry["text"])
    assert target.requests == []
    record("outbound", {"addresses_tried": len(urls), "refused": sum(k == "rule_failed" for k in kinds.values()),
                        "requests_reaching_loopback_server": len(target.requests)})
