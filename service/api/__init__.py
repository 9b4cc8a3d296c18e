"""HTTP transport: wire schemas, routes, and the one error-to-status table."""
