"""SAML 2.0 service provider with `python3-saml` (onelogin.saml2), one per SSO provider.

Strict mode; the IdP must sign its assertions (`wantAssertionsSigned`) with the certificate
from its imported metadata; audience, recipient, destination and time window are checked by
the library; the response must answer an AuthnRequest we sent (single use), and each
assertion id is accepted once until its NotOnOrAfter (replay protection). The SP signs its
AuthnRequests with a key generated per provider, kept in the secrets store.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from control_plane.db.models import SsoProvider
from control_plane.errors import Invalid, Unauthenticated

log = logging.getLogger(__name__)

EMAIL_ATTRIBUTES = (
    "email",
    "mail",
    "emailAddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
NAME_ATTRIBUTES = (
    "displayName",
    "name",
    "http://schemas.microsoft.com/identity/claims/displayname",
)
SP_CERT_YEARS = 10


@dataclass(frozen=True)
class IdpMetadata:
    entity_id: str
    sso_url: str
    certificate: str


def _metadata_error(message: str) -> Invalid:
    return Invalid(
        f"saml_idp_metadata: {message}",
        details=[{"field": "saml_idp_metadata", "message": message}],
    )


def parse_idp_metadata(metadata_xml: str) -> IdpMetadata:
    """Entity id, redirect-binding SSO URL and signing certificate from IdP metadata."""
    try:
        data = OneLogin_Saml2_IdPMetadataParser.parse(metadata_xml)
    except (etree.XMLSyntaxError, ValueError) as error:
        raise _metadata_error(f"not well-formed XML ({type(error).__name__})") from None
    idp = data.get("idp", {})
    certificate = idp.get("x509cert") or (idp.get("x509certMulti", {}).get("signing") or [None])[0]
    if not idp.get("entityId"):
        raise _metadata_error("no IDPSSODescriptor with an entityID")
    if not idp.get("singleSignOnService", {}).get("url"):
        raise _metadata_error("no SingleSignOnService with the HTTP-Redirect binding")
    if not certificate:
        raise _metadata_error("no signing certificate (KeyDescriptor/X509Certificate)")
    try:
        x509.load_der_x509_certificate(base64.b64decode(certificate))
    except (ValueError, binascii.Error):
        raise _metadata_error("the signing certificate does not parse") from None
    return IdpMetadata(idp["entityId"], idp["singleSignOnService"]["url"], certificate)


def generate_sp_keypair(common_name: str) -> tuple[str, str]:
    """A fresh RSA-2048 key and self-signed certificate (PEM) for one provider's SP."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * SP_CERT_YEARS))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def _settings(
    provider: SsoProvider,
    sp_key: str | None,
    urls: dict[str, str | None],
    *,
    sign_requests: bool = True,
) -> dict[str, Any]:
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": urls["sp_entity_id"],
            "assertionConsumerService": {"url": urls["sp_acs_url"], "binding": C.BINDING_HTTP_POST},
            "NameIDFormat": C.NAMEID_UNSPECIFIED,
            "x509cert": provider.saml_sp_certificate or "",
            "privateKey": sp_key or "",
        },
        "idp": {
            "entityId": provider.saml_idp_entity_id,
            "singleSignOnService": {
                "url": provider.saml_idp_sso_url,
                "binding": C.BINDING_HTTP_REDIRECT,
            },
            "x509cert": provider.saml_idp_certificate,
        },
        "security": {
            "authnRequestsSigned": sign_requests,
            "wantAssertionsSigned": True,
            "wantMessagesSigned": False,
            "wantAssertionsEncrypted": False,
            "wantNameId": True,
            "wantAttributeStatement": False,
            "requestedAuthnContext": False,
            "rejectDeprecatedAlgorithm": True,
            "signatureAlgorithm": C.RSA_SHA256,
            "digestAlgorithm": C.SHA256,
            "signMetadata": False,
        },
    }


def _request_data(acs_url: str, post: dict[str, str] | None = None) -> dict[str, Any]:
    """What python3-saml checks Destination/Recipient against: our configured public URL."""
    parts = urlsplit(acs_url)
    https = parts.scheme == "https"
    return {
        "https": "on" if https else "off",
        "http_host": parts.netloc,  # host[:port], exactly as in our public URL
        "script_name": parts.path,
        "get_data": {},
        "post_data": post or {},
    }


def sp_metadata(provider: SsoProvider, sp_key: str, urls: dict[str, str | None]) -> str:
    # The library insists on the key whenever requests are signed; only the cert is published.
    settings = OneLogin_Saml2_Settings(_settings(provider, sp_key, urls), sp_validation_only=True)
    metadata = settings.get_sp_metadata()
    errors = settings.validate_metadata(metadata)
    if errors:
        raise RuntimeError(f"generated SP metadata is invalid: {errors}")
    return metadata.decode() if isinstance(metadata, bytes) else str(metadata)


def begin(provider: SsoProvider, sp_key: str, urls: dict[str, str | None]) -> tuple[str, str]:
    """(IdP redirect URL carrying a signed AuthnRequest, the request's id)."""
    assert urls["sp_acs_url"]
    auth = OneLogin_Saml2_Auth(_request_data(urls["sp_acs_url"]), _settings(provider, sp_key, urls))
    url = auth.login(set_nameid_policy=False)
    return url, auth.get_last_request_id()


def in_response_to(saml_response: str) -> str:
    """The AuthnRequest id a response claims to answer (read before any trust is placed)."""
    try:
        document = OneLogin_Saml2_XML.to_etree(base64.b64decode(saml_response, validate=True))
    except (ValueError, binascii.Error, etree.XMLSyntaxError):
        raise Unauthenticated("SAMLResponse is not base64-encoded XML") from None
    value = document.get("InResponseTo")
    if not value:
        raise Unauthenticated("unsolicited SAML responses are not accepted; start at our login")
    return str(value)


@dataclass(frozen=True)
class Assertion:
    subject: str
    email: str
    display_name: str | None
    groups: tuple[str, ...]
    assertion_id: str
    not_on_or_after: datetime | None


def finish(
    provider: SsoProvider,
    urls: dict[str, str | None],
    saml_response: str,
    request_id: str,
) -> Assertion:
    """Validate the response (signature, audience, recipient, times, InResponseTo)."""
    assert urls["sp_acs_url"]
    auth = OneLogin_Saml2_Auth(
        _request_data(urls["sp_acs_url"], {"SAMLResponse": saml_response}),
        _settings(provider, None, urls, sign_requests=False),  # no key needed to verify
    )
    try:
        auth.process_response(request_id=request_id)
    except Exception as error:  # the library raises bare Exceptions for malformed input
        log.info("SAML response rejected: %s", error)
        raise Unauthenticated("SAML response rejected: malformed") from None
    if auth.get_errors() or not auth.is_authenticated():
        reason = auth.get_last_error_reason() or ", ".join(auth.get_errors())
        log.info("SAML response rejected for provider %s: %s", provider.id, reason)
        raise Unauthenticated(f"SAML response rejected: {reason}")
    attributes: dict[str, list[str]] = auth.get_attributes()
    name_id = auth.get_nameid() or ""
    email = next((attributes[a][0] for a in EMAIL_ATTRIBUTES if attributes.get(a)), None)
    if email is None and "@" in name_id:
        email = name_id
    if not email:
        raise Unauthenticated("the SAML assertion carries no email address")
    name = next((attributes[a][0] for a in NAME_ATTRIBUTES if attributes.get(a)), None)
    not_after = auth.get_last_assertion_not_on_or_after()
    return Assertion(
        subject=name_id,
        email=email,
        display_name=name[:200] if name else None,
        groups=tuple(attributes.get(provider.groups_claim, []))[:500],
        assertion_id=str(auth.get_last_assertion_id()),
        not_on_or_after=datetime.fromtimestamp(not_after, UTC) if not_after else None,
    )
