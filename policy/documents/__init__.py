"""Policy text → validated documents and sets (YAML/JSON with positions, typed fields, the
document kinds, the built-in roles)."""
