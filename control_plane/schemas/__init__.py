"""Request and response bodies: `XCreate` / `XUpdate` in, `X` out."""
