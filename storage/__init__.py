"""Where results and assets live: one interface, S3 and local-filesystem backends."""
