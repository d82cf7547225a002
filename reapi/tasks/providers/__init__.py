"""Task providers: one pure module per upstream type (see base.py); PROVIDERS maps the channel
type to its provider object. Providers do no I/O: the worker sends what they build."""
from __future__ import annotations

from reapi.tasks.providers.ark import PROVIDER as _ARK
from reapi.tasks.providers.base import TaskProvider

PROVIDERS: dict[str, TaskProvider] = {_ARK.type: _ARK}

try:  # helper modules of the other task types, when this build has them
    from reapi.tasks.providers.openai_images import PROVIDER as _IMAGES

    PROVIDERS[_IMAGES.type] = _IMAGES
except ImportError:
    pass
try:
    from reapi.tasks.providers.reapi_tasks import PROVIDER as _REAPI

    PROVIDERS[_REAPI.type] = _REAPI
except ImportError:
    pass
