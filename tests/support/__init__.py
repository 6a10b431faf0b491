"""Test support for the cluster tier: a Kubernetes client, backends, and process fixtures."""
