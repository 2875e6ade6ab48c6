"""What every long-running process shares: one JSON log format, the garbage collector's
settings."""
