"""Storage: SE placement and read ordering, signed access envelopes, the embedded SE
(HTTPS over a local directory) and the client-side copy engine."""
