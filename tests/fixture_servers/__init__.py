"""Local HTTP servers that answer like the real services, for client tests without mocks."""
