"""HTTP routers: one thin module per resource; each route opens a transaction and calls
one service function."""
