"""The grid's central configuration (docs/ldap.md): people with their DNs, roles, sites and
their CEs, partitions, SEs and quotas, from OpenLDAP or from local files, behind one
interface (``source.ConfigSource``) and held by ``service.Directory``."""
