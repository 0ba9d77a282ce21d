"""Ground-floor helpers every package may use: console output for the command groups."""
