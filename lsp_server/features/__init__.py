"""Language-server features: each registers its handlers on the server; none imports another."""
