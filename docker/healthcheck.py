"""Docker HEALTHCHECK: exit 0 when the service answers 200 on /readyz (models loaded), else 1.

Standard library only, so the image needs no curl. ``CRYSTAL_HEALTHCHECK_URL`` overrides the URL.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("CRYSTAL_HEALTHCHECK_URL", "http://127.0.0.1:8000/readyz")


def main() -> int:
    """Probe the readiness URL once and return the exit status."""
    try:
        with urllib.request.urlopen(URL, timeout=4) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"{URL}: {error}")
        return 1
    print(f"{URL}: {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
