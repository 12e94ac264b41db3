"""Local HTTP stand-ins for the web services urbanvis talks to: one module per service."""
