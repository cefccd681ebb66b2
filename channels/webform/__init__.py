"""The web form channel: an HTML form and /api/v1/requests for residents."""
