"""`idp apps sync FOLDER`: one connected app per *.xml file, registered or updated from the folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from ...extensions import db
from ...models import ConnectedApp
from .. import ServiceError
from .registry import register_app, update_metadata
from .validation import metadata_warnings, validate_slug


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)   # (file name, warning): accepted, but look


def sync_folder(folder: Path) -> SyncReport:
    """Register or update one app per *.xml (slug = file name); never deletes, never touches apps it did not create."""
    report = SyncReport()
    for path in sorted(folder.glob("*.xml")):
        slug = path.stem.lower()
        try:
            validate_slug(slug)
            xml = path.read_bytes()
            existing = db.session.scalar(select(ConnectedApp).where(ConnectedApp.slug == slug))
            if existing is None:
                added = register_app(xml, slug=slug, source="sync", source_ref=str(path))
                report.added.append(slug)
                warnings = metadata_warnings(added.sp)
            elif existing.source != "sync":
                raise ServiceError(f"slug {slug!r} belongs to an app that was not created by sync; left alone",
                                   field="slug")
            elif update_metadata(existing, xml, source_ref=str(path)):
                report.updated.append(slug)
                warnings = metadata_warnings(existing.sp)
            else:
                report.unchanged.append(slug)
                warnings = []
            report.warnings.extend((path.name, warning) for warning in warnings)
        except (ServiceError, OSError) as exc:
            # refused before anything of this file was written (the services validate first); a race
            # lost at the database fails the whole sync in the command's unit of work instead
            report.refused.append((path.name, str(exc)))
    return report
