"""Request and response shapes of REST API v1."""
