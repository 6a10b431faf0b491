"""Pure builders: desired child objects from a parent and plain data; no client in sight."""
