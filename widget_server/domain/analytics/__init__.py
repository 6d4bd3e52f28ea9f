"""Analytics: the batched event writer, queries and exports, erasure and retention, webhooks."""
