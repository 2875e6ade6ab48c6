"""A local SAML 2.0 identity provider built on pysaml2 (signing with the xmlsec1 binary),
for the SSO tests. Its key and certificate are generated at run time.

`metadata()` is what an admin imports; `trust_sp(xml)` loads our SP metadata; `respond(url)`
takes the HTTP-Redirect URL our login sent the browser to, parses the AuthnRequest and
returns the base64 `SAMLResponse` the browser would POST to our ACS. It can be told to
misbehave: leave the assertion unsigned, sign with a key not in its metadata, issue an
assertion that has already expired, or — `respond(url, tamper=...)` — change any part of the
response (Audience, Destination, Recipient, InResponseTo, NotOnOrAfter…) and sign the
assertion afterwards, so the SP sees a validly signed assertion that is wrong only there.
"""

from __future__ import annotations

import base64
import tempfile
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from lxml import etree

with warnings.catch_warnings():
    # pysaml2 names a cipher mode cryptography has moved; not ours to fix, and unused here.
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.metadata import create_metadata_string
    from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS, Assertion, NameID
    from saml2.server import Server
    from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

XMLSEC = "/usr/bin/xmlsec1"
SAML = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
Tamper = Callable[[etree._Element], None]
BASE = "http://127.0.0.1:9/saml-idp"  # never dialled: the test carries messages itself


def _keypair(directory: Path, name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test idp {name}")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


class SamlIdp:
    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="kaizen-saml-idp-")
        directory = Path(self._dir.name)
        self.keys = {"good": _keypair(directory, "good"), "rogue": _keypair(directory, "rogue")}
        self.entity_id = f"{BASE}/metadata"
        self.sso_url = f"{BASE}/sso"
        self.sp_metadata: list[str] = []
        self.email = "alice@example.com"
        self.groups: list[str] = []
        self.sign = True
        self.key = "good"
        self.lifetime_minutes = 5

    def close(self) -> None:
        self._dir.cleanup()

    def _config(self) -> IdPConfig:
        key_file, cert_file = self.keys[self.key]
        config: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": XMLSEC,
            "key_file": key_file,
            "cert_file": cert_file,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]
                    },
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": self.lifetime_minutes},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_BASIC,
                        }
                    },
                }
            },
            "metadata": {"inline": self.sp_metadata} if self.sp_metadata else {},
        }
        idp_config = IdPConfig()
        idp_config.load(config)
        return idp_config

    def metadata(self) -> str:
        """The IdP metadata an admin imports (signed by the good key's certificate)."""
        key, self.key = self.key, "good"
        try:
            return create_metadata_string(None, self._config(), valid=24, sign=False).decode()
        finally:
            self.key = key

    def trust_sp(self, sp_metadata: str) -> None:
        """Trust one more SP (an IdP shared by several organisations trusts each of them)."""
        if sp_metadata not in self.sp_metadata:
            self.sp_metadata.append(sp_metadata)

    def respond(self, redirect_url: str, tamper: Tamper | None = None) -> str:
        """Log the configured user in for the AuthnRequest in `redirect_url`; `tamper` edits
        the response document before the assertion is (re-)signed."""
        query = parse_qs(urlsplit(redirect_url).query)
        server = Server(config=self._config())
        request = server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        message = request.message
        response = server.create_authn_response(
            identity={"mail": [self.email], "groups": list(self.groups)},
            in_response_to=message.id,
            destination=message.assertion_consumer_service_url,
            sp_entity_id=message.issuer.text,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=self.email),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_assertion=self.sign,
            sign_response=False,
            binding=BINDING_HTTP_POST,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        if tamper is not None:
            response = self._tampered(server, str(response), tamper)
        return base64.b64encode(str(response).encode()).decode()

    def _tampered(self, server: Server, xml: str, tamper: Tamper) -> str:
        document = etree.fromstring(xml.encode())
        tamper(document)
        assertion = document.find("saml:Assertion", SAML)
        if not self.sign or assertion is None:
            return etree.tostring(document).decode()
        for value in assertion.iterfind("ds:Signature//ds:DigestValue", SAML):
            value.text = ""
        for value in assertion.iterfind("ds:Signature/ds:SignatureValue", SAML):
            value.text = ""
        signed: str = server.sec.sign_statement(
            etree.tostring(document).decode(),
            node_name=f"{Assertion.c_namespace}:{Assertion.c_tag}",
            node_id=assertion.get("ID"),
        )
        return signed
