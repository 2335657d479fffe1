"""The owner's page: the HTTP server, the REST API under /api/v1/ and the static page."""
