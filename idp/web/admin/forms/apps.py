"""The forms that register an app (from metadata or entered by hand), refresh its metadata and enable or disable
it. Each field keeps the name= the pages post; the apps services check everything again when it is saved."""

from __future__ import annotations

from typing import Any

from flask_wtf.file import FileField
from werkzeug.datastructures import FileStorage
from wtforms import Field
from wtforms.validators import StopValidation, ValidationError

from idp.certs.x509 import CertificateError, decode_certificate
from idp.saml.sp_metadata import MAX_METADATA_BYTES, MetadataError
from idp.saml.sp_metadata_builder import (
    ACS_BINDINGS,
    HandEnteredSp,
    validate_certificate,
    validate_endpoint_url,
    validate_entity_id,
)
from idp.services.apps import validate_name, validate_slug
from idp.web.admin.forms.base import AdminForm, TextField, Validator, one_of, optional, required, service_rule

MAX_PICK_RADIOS = 100
SOURCE_LABELS = {"metadata_file": "a metadata file", "metadata_xml": "pasted XML", "metadata_url": "a metadata URL",
                 "manual": "the fields entered by hand"}
HAND_FIELDS = ("entity_id", "acs_url", "slo_url", "sp_certificate")


def read_upload(file: FileStorage) -> bytes:
    """An uploaded metadata file's bytes, read no further than the cap; ValidationError when empty or too large."""
    data: bytes = file.stream.read(MAX_METADATA_BYTES + 1)
    if not data.strip():
        raise ValidationError("the uploaded file is empty")
    if len(data) > MAX_METADATA_BYTES:
        raise ValidationError("the uploaded file is larger than 5 MiB")
    return data


def _slug_rule(form: Any, field: Field) -> None:
    if field.data == "new":  # reserved like the others; say why this one is
        raise ValidationError("slug “new” is taken by the admin console's New app page; choose another")
    service_rule(validate_slug)(form, field)


class _Naming(AdminForm):
    """Name and slug of a new app (both optional: defaults come from the metadata)."""

    name = TextField(limit=300, validators=[optional, service_rule(validate_name)])
    slug = TextField(limit=100, validators=[optional, _slug_rule])
    entity_id_pick = TextField()
    pick_token = TextField(limit=None, strip=False)


# ---------------------------------------------------------------- new app


def _hand_entered(form: NewAppForm, field: Field) -> None:
    """Hand-entered values are checked only when the SP is entered by hand."""
    if form.source != "manual":
        raise StopValidation()


def _entity_id(form: Any, field: Field) -> None:
    try:
        validate_entity_id(field.data)
    except MetadataError as exc:
        raise StopValidation(str(exc)) from None


def _endpoint(element: str) -> Validator:
    def check(form: Any, field: Field) -> None:
        try:
            validate_endpoint_url(field.data, element)
        except MetadataError as exc:
            raise StopValidation(str(exc)) from None
    return check


class NewAppForm(_Naming):
    """Register an app from exactly one source: an uploaded file, pasted XML, a URL, or the SP entered by hand."""

    metadata_file = FileField()
    metadata_xml = TextField(limit=None)
    metadata_url = TextField()
    entity_id = TextField(validators=[_hand_entered, required("the SP's entityID is required"), _entity_id])
    acs_url = TextField(validators=[_hand_entered, required("the Assertion Consumer Service URL is required"),
                                    _endpoint("AssertionConsumerService")])
    acs_binding = TextField(limit=100, validators=[_hand_entered])
    slo_url = TextField(validators=[_hand_entered, optional, _endpoint("SingleLogoutService")])
    sp_certificate = TextField(limit=20000, validators=[_hand_entered, optional])

    upload: bytes | None = None      # the uploaded file, once read by validate_metadata_file
    cert_b64: str | None = None      # the SP certificate as base64 DER, once read by validate_sp_certificate

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.acs_binding.data:
            self.acs_binding.data = "HTTP-POST"

    @property
    def given(self) -> list[str]:
        """The sources this post gives (exactly one is accepted)."""
        given = []
        if self.metadata_file.data is not None:
            given.append("metadata_file")
        if self.metadata_xml.data:
            given.append("metadata_xml")
        if self.metadata_url.data:
            given.append("metadata_url")
        if any(self[name].data for name in HAND_FIELDS):
            given.append("manual")
        return given

    @property
    def source(self) -> str | None:
        given = self.given
        return given[0] if len(given) == 1 else None

    def validate_metadata_file(self, field: Field) -> None:
        if field.data is not None and self.source == "metadata_file":
            self.upload = read_upload(field.data)

    def validate_acs_binding(self, field: Field) -> None:
        if field.data not in ACS_BINDINGS:
            raise ValidationError("only HTTP-POST can be entered by hand; for HTTP-Artifact, register the SP "
                                  "from its metadata")

    def validate_sp_certificate(self, field: Field) -> None:
        try:
            cert_b64 = decode_certificate(field.data)
            validate_certificate(cert_b64)
        except (CertificateError, MetadataError) as exc:
            raise ValidationError(str(exc)) from None
        self.cert_b64 = cert_b64

    def validate(self, extra_validators: Any = None) -> bool:
        valid: bool = super().validate(extra_validators)
        given = self.given
        if len(given) != 1:
            self.form_errors.append(
                "Give one source: upload a metadata file, paste the XML, enter a metadata URL, or fill in the SP "
                "by hand." if not given else
                "Give only one source; you gave " + " and ".join(SOURCE_LABELS[g] for g in given) + ".")
            return False
        return valid

    def hand_entered(self) -> HandEnteredSp:
        """The SP entered by hand (after validate())."""
        return HandEnteredSp(entity_id=self.entity_id.data, acs_url=self.acs_url.data,
                             acs_binding=ACS_BINDINGS[self.acs_binding.data], slo_url=self.slo_url.data or None,
                             cert_b64=self.cert_b64)


class PickAppForm(_Naming):
    """The second step for an aggregate: which of its SPs to register (the document is parked server-side)."""

    def validate_entity_id_pick(self, field: Field) -> None:
        if not field.data:
            raise ValidationError("choose the service provider to register")


# ---------------------------------------------------------------- refresh and status


class RefreshForm(AdminForm):
    """New metadata for an app, from one source: its URL, an uploaded file or pasted XML."""

    metadata_file = FileField()
    metadata_xml = TextField(limit=None)
    metadata_url = TextField()

    upload: bytes | None = None

    @property
    def given(self) -> list[str]:
        return [name for name, present in (("metadata_file", self.metadata_file.data is not None),
                                           ("metadata_xml", bool(self.metadata_xml.data)),
                                           ("metadata_url", bool(self.metadata_url.data))) if present]

    def validate_metadata_file(self, field: Field) -> None:
        if field.data is not None and len(self.given) == 1:
            self.upload = read_upload(field.data)

    def validate(self, extra_validators: Any = None) -> bool:
        valid: bool = super().validate(extra_validators)
        given = self.given
        if len(given) != 1:
            self.form_errors.append("Give the new metadata: fetch it from a URL, upload a file or paste the XML."
                                    if not given else "Give only one source for the new metadata.")
            return False
        return valid


class AppStatusForm(AdminForm):
    enabled = TextField(limit=None, strip=False, validators=[one_of(("0", "1"), "enabled")])


class ApplyRefreshForm(AdminForm):
    token = TextField(limit=64, strip=False)
