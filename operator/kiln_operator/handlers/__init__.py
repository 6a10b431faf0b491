"""Thin kopf handlers, one module per kind: translate kopf events into reconciles."""
