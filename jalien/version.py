"""jalien's version: the one place it is written (meson reads it through build/version.py)."""

__version__ = "0.1.0"
JALIEN_COMPAT_VERSION = "1.9.0"  # JAliEn server version whose behaviour we follow
