"""Where the shared read-only test data lives (one definition for every test).

``SKYSIFT_SHARED_DATA`` overrides; otherwise ``../shared/data`` beside the checkout,
then the workplace's ``/work/shared/data``, so a clone anywhere finds it.
"""

from __future__ import annotations

import os
from pathlib import Path


def _shared_data() -> Path:
    candidates = [
        os.environ.get("SKYSIFT_SHARED_DATA"),
        Path(__file__).resolve().parents[2] / "shared" / "data",
        "/work/shared/data",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path("/work/shared/data")


SHARED_DATA = _shared_data()
REAL_DATA = SHARED_DATA / "real"
SERVICES_DATA = SHARED_DATA / "services"
