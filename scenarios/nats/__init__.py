"""A NATS JetStream cluster (Debian's nats-server) under faults, checked through NATS itself."""
