"""Kiln's Kubernetes operator: the API types, the CRD generator and the reconcilers."""

API_GROUP = "kiln.dev"
API_VERSION = "v1alpha1"
