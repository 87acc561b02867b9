"""The data movers: physical removal of replicas (a durable deletion queue worked on each SE)
and transfers between SEs (mirror: a persistent transfer queue, a worker pool limited per
destination SE). A service: it imports no other service; roles hand it the catalogue and
the storage through the small Protocols of ``ports.py`` (docs/datamovers.md)."""
