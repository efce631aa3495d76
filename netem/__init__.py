"""Network emulation: hosts in network namespaces, shaped links, partitions."""
