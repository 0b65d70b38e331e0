"""Command line: `python -m entra_emulator --seed FILE --state-dir DIR [--test-api]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .seed import SeedError
from .server import serve

DEMO_SEED = Path(__file__).with_name("demo_seed.json")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0 picks a free one)")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m entra_emulator",
        description="A local emulator of Microsoft Entra ID v2.0 and the Dynamics 365 WhoAmI call.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on and to advertise in URLs (default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=os.environ.get("EMULATOR_PORT", "8443"),
        help="HTTPS port for everything (default $EMULATOR_PORT or 8443)",
    )
    parser.add_argument(
        "--browser-port",
        type=_port,
        default=os.environ.get("EMULATOR_BROWSER_PORT", "8080"),
        help="plain-HTTP port for the browser pages (default $EMULATOR_BROWSER_PORT or 8080)",
    )
    parser.add_argument(
        "--seed",
        type=Path,
        default=DEMO_SEED,
        help="seed JSON file (default: the bundled demo_seed.json)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("var/entra-emulator"),
        help="where the CA, TLS and signing keys live (default var/entra-emulator)",
    )
    parser.add_argument(
        "--test-api", action="store_true", help="enable the /_emulator/* test API on the HTTPS port"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        serve(
            host=args.host,
            port=args.port,
            browser_port=args.browser_port,
            seed_path=args.seed,
            state_dir=args.state_dir,
            test_api=args.test_api,
        )
    except SeedError as exc:
        print(f"entra-emulator: bad seed: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"entra-emulator: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
