"""Kiln's public API (group kiln.dev, version v1alpha1) as typed models.

These models are the single source of truth: `kiln_operator.generate` turns them into the
CRDs under `crds/` and the reference in `docs/api.md`; the reconcilers parse objects
with them.
"""
