"""A network test harness for peer-to-peer systems."""
