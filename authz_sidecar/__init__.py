"""The authz sidecar: Envoy ext_authz v3 (gRPC) and HTTP authz from a verified bundle."""
