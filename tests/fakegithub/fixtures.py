"""pytest fixtures for the fake GitHub server."""
