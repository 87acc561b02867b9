"""X.509 identities for the grid: keys and certificates, RFC 3820 proxies, DNs and accounts.

One module per job: ``names`` (slash DNs, subject hash), ``certs`` (keys, CA, host and user
certificates, PEM files), ``proxy`` (RFC 3820 proxies), ``identity`` (the end-entity DN of a
TLS peer), ``tls`` (SSL contexts), ``cadir`` (hashed CA directory), ``accounts`` (DN → account)
and ``setup`` (``jalien-bin setup``). Every failure is an ``errors.AuthError`` with a message
meant for the user.
"""
