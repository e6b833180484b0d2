"""sizewise: the smallest model that is good enough, for each request.

Importing the package is cheap: heavy dependencies (llama.cpp, scikit-learn, the
embedding model) load lazily where they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
