"""What the routes do, one module per resource: each route parses, calls its handler, returns a schema."""
