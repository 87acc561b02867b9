"""The wire protocol: typed messages, their encodings, and frames of the binary channel."""
