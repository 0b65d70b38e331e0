"""`make serve` refuses to start without the values a deployment must set, naming them all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serve_names_every_missing_setting_and_starts_nothing():
    result = subprocess.run(
        [sys.executable, "scripts/serve.py"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DJANGO_SECRET_KEY": "k" * 50},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    for name in ("FIELD_ENCRYPTION_KEYS", "PUBLIC_BASE_URL", "ALLOWED_HOSTS", "DATABASE_URL"):
        assert name in result.stderr
    assert "DJANGO_SECRET_KEY" not in result.stderr
    assert "Applying" not in result.stdout  # nothing migrated
