"""Kaizen Studio control plane: tenants, identities, policies, bundles."""
