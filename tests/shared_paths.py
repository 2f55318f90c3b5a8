"""Where the shared folder is (test vectors, field-fault cases and real data sets used by several
repositories, so they are not copied into this one): `$GREENNANNY_SHARED` when set, else `shared`
beside the repository, as the demo looks for it. Tests that need it skip where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DIR = (Path(os.environ["GREENNANNY_SHARED"]) if os.environ.get("GREENNANNY_SHARED")
              else Path(__file__).resolve().parents[2] / "shared")
