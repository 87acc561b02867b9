"""The one error both twins raise, so callers and tests see the same type and text."""


class ProtocolError(ValueError):
    """The peer sent bytes that are not a valid jalien frame; the connection must close."""
