"""SQL plumbing shared by the services that keep state in SQL (catalogue, task queue)."""
