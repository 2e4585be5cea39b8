"""The public Python API: :class:`Platform` and the result types it answers with.

```python
from embplat import Platform
p = Platform(home=".embplat")
p.classify("img.jpg", k=10).label
```
"""

from embplat.api.platform import Platform
from embplat.api.results import (
    Captions,
    CaptionText,
    Classification,
    ClassInfo,
    Failure,
    ImageInfo,
    JobInfo,
    Match,
    ModelInfo,
    SearchResult,
    ZeroShot,
)

__all__ = [
    "CaptionText",
    "Captions",
    "ClassInfo",
    "Classification",
    "Failure",
    "ImageInfo",
    "JobInfo",
    "Match",
    "ModelInfo",
    "Platform",
    "SearchResult",
    "ZeroShot",
]
