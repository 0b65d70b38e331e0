"""The emulator's demo seed, as the values a person would type into the product."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEMO_SEED = Path(__file__).resolve().parent.parent / "entra_emulator" / "demo_seed.json"


@dataclass(frozen=True)
class Demo:
    """The demo seed's values, as a person would type them into the product."""

    tenant_id: str
    other_tenant_id: str
    client_id: str
    client_secret: str
    second_client_secret: str
    org_url: str
    admin: str
    member: str
    outsider: str

    @classmethod
    def from_seed(cls, *, org_url: str) -> Demo:
        """The demo seed's values; ``org_url`` is the running emulator's origin."""
        seed = json.loads(DEMO_SEED.read_text())
        contoso, fabrikam = seed["tenants"][0], seed["tenants"][1]
        app = seed["apps"][0]
        return cls(
            tenant_id=contoso["id"],
            other_tenant_id=fabrikam["id"],
            client_id=app["client_id"],
            client_secret=app["secrets"][0]["value"],
            second_client_secret=app["secrets"][1]["value"],
            org_url=org_url,
            admin=contoso["users"][0]["upn"],
            member=contoso["users"][1]["upn"],
            outsider=fabrikam["users"][0]["upn"],
        )


def demo_org(demo: Demo, **changes: object) -> dict:
    """The demo seed's Dynamics org as a seed fragment's entry, with ``changes`` (for
    ``emulator.seed({"dynamics_orgs": [...]})``)."""
    org = json.loads(DEMO_SEED.read_text())["dynamics_orgs"][0]
    return {**org, "url": demo.org_url, **changes}
