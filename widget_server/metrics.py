"""Prometheus metrics, one registry per app (no module-level state): served at `GET /metrics`.

Replies, time to first token and guardrail triggers are read off the analytics events as they are emitted, so
every channel is counted the same way and nothing on the reply path calls into metrics twice.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)


def _rule_family(rule: str) -> str:
    """`term.rival` → `term`: tenants name their rules, and a label per tenant-chosen name would grow unbounded."""
    head = rule.split(".", 1)[0]
    return head if head in ("input", "term", "pattern", "pii", "topic", "escalation") else "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("widget_ws_connections", "Open widget WebSocket connections", registry=r)
        self.replies = Counter("widget_replies", "Replies finished, by finish reason", ["finish_reason"], registry=r)
        self.ttft = Histogram("widget_time_to_first_token_seconds", "Time from a visitor's message to the first "
                              "token of the reply", buckets=TTFT_BUCKETS, registry=r)
        self.guardrail = Counter("widget_guardrail_triggers", "Guardrail decisions other than allow",
                                 ["source", "action", "rule"], registry=r)
        self.escalations = Counter("widget_escalations", "Conversations handed to a person", registry=r)
        self.events_queued = Counter("widget_events_queued", "Analytics events emitted", registry=r)
        self.events_written = Counter("widget_events_written", "Analytics events committed", registry=r)
        self.events_buffered = Gauge("widget_events_buffered", "Analytics events waiting to be written", registry=r)
        self.events_spilled = Counter("widget_events_spilled", "Analytics events spilled to disk while the "
                                      "database was unavailable and the buffer full", registry=r)
        self.events_rejected = Counter("widget_events_rejected", "Analytics events the database refused for their "
                                       "values, set aside in events-rejected.jsonl", registry=r)
        self.event_write_errors = Counter("widget_event_write_errors", "Failed analytics batch writes (retried)",
                                          registry=r)
        self.webhook_deliveries = Counter("widget_webhook_deliveries", "Webhook delivery attempts, by outcome",
                                          ["outcome"], registry=r)
        self.webhook_in_flight = Gauge("widget_webhook_tries_in_flight", "Webhook tries this node is making now",
                                       registry=r)

    def observe_event(self, type_: str, attributes: dict[str, Any]) -> None:
        self.events_queued.inc()
        if type_ == "reply.completed":
            self.replies.labels(str(attributes.get("finish_reason"))).inc()
            ttft = attributes.get("ttft_ms")
            if isinstance(ttft, int | float):
                self.ttft.observe(ttft / 1000)
        elif type_ == "guardrail.triggered":
            self.guardrail.labels(str(attributes.get("source")), str(attributes.get("action")),
                                  _rule_family(str(attributes.get("rule")))).inc()
        elif type_ == "escalation.triggered":
            self.escalations.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
