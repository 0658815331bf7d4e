"""The vsteer command line and the Python client."""
