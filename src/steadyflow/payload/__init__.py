"""Payloads: how values are encoded in histories (JSON, simpleflow's canonical form)."""
