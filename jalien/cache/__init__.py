"""The shared cache service: namespaces of bytes on LMDB, with a time to live, a size bound
and LFN scopes, shared by every process of a host that opens the same directory. The only
package of jalien that imports lmdb.

- ``store.CacheStore``: the LMDB store; reads answered inline on the calling thread, writes
  group-committed by one writer thread.
- ``typed.TypedCache``: the catalogue's ``CatalogueCache`` protocol on a store (msgspec
  values per namespace, scope invalidation).
- ``memo.ReadThrough``: a read-through memo of a lookup function (accounts by login).
- ``reply_cache.LmdbReplyCache``: ``net.proxy.ReplyCache`` for a level (jBox, VoBox, JobAgent).
- ``textcache.TextCache``: JAliEn's TextCache HTTP shape (``ns``, ``key``, ``value``,
  ``timeout``) over a store.
- ``client.RemoteCache``: the binary channel's ``cache.*`` commands from another process.
"""
