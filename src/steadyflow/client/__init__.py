"""The Python client: start executions, wait for their results, signal, query, cancel and list
them from application code, on any engine. The `workflow` commands of the CLI are a thin layer
over it.

    import steadyflow

    client = steadyflow.Client()                      # STEADYFLOW_URL, else sqlite:///steadyflow.db
    handle = client.start(Checkout, order_id, workflow_id=f"checkout-{order_id}", tags=["web"])
    handle.signal("approved", by="ann")
    receipt = handle.result(timeout=30)               # WorkflowFailed / ResultTimeout otherwise

    async with steadyflow.AsyncClient() as client:    # the same, awaited
        receipt = await (await client.start(Checkout, order_id)).result()

`Client` and `AsyncClient` share one implementation: every method is a generator of effects
(engine calls, sleeps) that a blocking or an asyncio driver performs; see `steadyflow.client.dual`.
See docs/client.md.
"""

from __future__ import annotations

from .client import AsyncClient, Client, ClientBase
from .handle import AsyncWorkflowHandle, HandleBase, WorkflowHandle

__all__ = ["AsyncClient", "AsyncWorkflowHandle", "Client", "ClientBase", "HandleBase", "WorkflowHandle"]
