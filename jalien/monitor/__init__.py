"""Monitoring at central (docs/monitoring.md): the grid as its VoBoxes and JobAgents report
it (``grid``), its per-minute history in the shared store, and the web page (``page``)."""
