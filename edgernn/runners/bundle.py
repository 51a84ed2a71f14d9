"""The probe as one zip file that ``python3 probe.zip ...`` runs on a device (stdlib + numpy
+ the runtime there; nothing else of edgernn is needed)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

PROBE_DIR = Path(__file__).resolve().parent.parent / "probe"
MAIN = "import sys\nfrom edgernn_probe.main import main\nsys.exit(main(sys.argv[1:]))\n"


def probe_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("__main__.py", MAIN)
        for f in sorted(PROBE_DIR.glob("*.py")):
            if f.name != "__main__.py":
                z.write(f, f"edgernn_probe/{f.name}")
    return buf.getvalue()
