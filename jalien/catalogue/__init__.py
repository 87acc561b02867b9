"""The file catalogue: AliEn's LFN/GUID namespace, its permissions and its backends."""
