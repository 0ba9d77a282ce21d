"""The authority's public HTTP face: its key, the certificates it issued and the latest revocation list (GET only).

Nothing here needs a secret or changes state: certifying and revoking stay with the authority's
operators (``pcf authority certify`` / ``revoke`` / ``crl``). Every document served is signed, so
whoever relays it (a mirror, the aggregator) cannot alter it unnoticed.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, HTTPException, Path, Query

from authority import issuer
from authority.settings import AuthoritySettings
from authority.store import AuthorityStore
from keys import identity

__all__ = ["create_app"]

_SERIAL = r"^[0-9a-f]{32}$"
_USCC = r"^[0-9A-Z]{18}$"


def create_app(settings: AuthoritySettings, store: AuthorityStore | None = None) -> FastAPI:
    """The read-only service over the authority's register and public key."""
    register = store or AuthorityStore(settings.database_url, auto_upgrade=settings.db_auto_upgrade)
    public = identity.public_key_b64(issuer.load_key(settings.key_file))
    app = FastAPI(title="pcf-dataspace membership authority", version="1", description=__doc__ or "")

    @app.get("/api/v1/authority")
    def authority_info() -> dict[str, str]:
        """The authority's public key (pin it out of band; this answer only helps to compare)."""
        return {"public_key": public, "key_id": identity.fingerprint(public)}

    @app.get("/api/v1/certificates/{serial}")
    def certificate(serial: str = Path(pattern=_SERIAL)) -> dict[str, Any]:
        row = register.certificate(serial)
        if row is None:
            raise HTTPException(404, f"no certificate with serial {serial}")
        doc: dict[str, Any] = json.loads(row.document)
        return doc

    @app.get("/api/v1/certificates")
    def certificates(uscc: str = Query(pattern=_USCC)) -> list[dict[str, Any]]:
        """Every certificate issued for one USCC (revoked ones too; the revocation list says which)."""
        return [json.loads(r.document) for r in register.certificates(uscc)]

    @app.get("/api/v1/revocation-list")
    def revocation_list() -> dict[str, Any]:
        crl = issuer.current_revocation_list(register)
        if crl is None:
            raise HTTPException(404, "no revocation list issued yet (`pcf authority crl`)")
        return crl.model_dump(mode="json")

    return app
