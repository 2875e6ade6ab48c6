"""The outbound-URL guard and the HTTP clients that obey it."""
