"""The one exception type of jalien.auth.

Callers print ``str(exc)`` to the user, so every message names the file, DN or setting at
fault and says what to do; no traceback is needed to understand it.
"""

from __future__ import annotations


class AuthError(Exception):
    """A credential, certificate, CA directory or account that cannot be used."""
