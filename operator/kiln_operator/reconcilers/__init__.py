"""Reconcilers: gather an object's world once, decide with pure functions, then write."""
