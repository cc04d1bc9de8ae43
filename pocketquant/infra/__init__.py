"""Connections to MongoDB and Redis, and the embedded stand-ins used by `pocketquant dev`."""
