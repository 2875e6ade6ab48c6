"""Policy documents, compiler, decision engine and signed bundles (pure Python)."""
