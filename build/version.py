"""Print jalien's version for meson; the single source is jalien/version.py."""

import pathlib
import re

text = (pathlib.Path(__file__).resolve().parent.parent / "jalien" / "version.py").read_text()
print(re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1))
