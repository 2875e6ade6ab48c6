"""Signed OPA-format bundles: build and verify, the store a runtime keeps, sync by long-poll,
signing keys, gateway bindings."""
