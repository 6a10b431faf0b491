"""Shared pytest configuration for Kiln's test tiers."""
