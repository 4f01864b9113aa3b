"""Federation feeds: a signed SAML metadata aggregate (an EntitiesDescriptor with thousands of entities, as a
national research federation publishes) whose selected SPs become connected apps and are kept in step with it.

A sync: conditional GET (ETag / Last-Modified) of the feed's URL, bounded by IDP_FEED_MAX_BYTES; the root's
enveloped signature verified with the feed's trust anchor and the validUntil rules (metadata_trust, as for one
app), on a tree that is freed before anything else happens; then the same bytes read again entity by entity
(lxml iterparse, each EntityDescriptor cleared once handled), so memory beyond the verification step does not
grow with the document. Each SAML 2.0 SP entity that matches the feed's selection (an entity attribute in
md:Extensions/mdattr:EntityAttributes, or its entityID named) becomes a connected app (source "feed", slug from
the entityID) or updates the app it became; a change that removes every ACS or every signing certificate is held
(as metadata_refresh does) until `idp feeds sync NAME --yes`; entities gone from the feed or no longer selected
have their app disabled (never deleted), and come back enabled when they return. Entities whose bytes did not
change are not parsed again. Existing members are looked up in bulk, and the caller commits after each batch of
BATCH entities (the `commit` callable) so a 10,000-entity sync is a few dozen short transactions.

Services never commit: the CLI command, the console request or the worker's job passes `commit` and owns the
unit of work; a refused document (unsigned, badly signed, expired, too big) changes no app at all.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..certs.x509 import cert_info
from ..extensions import component, db
from ..models import ConnectedApp, Feed, FeedMember, utcnow
from ..saml.constants import NS_MD, NS_SAML, NS_SAMLP
from ..saml.metadata_trust import TrustError, check_valid_until, load_trust_anchor, verify_aggregate
from ..saml.sp_metadata import MetadataError, SpMetadata
from . import ServiceError, outbox
from .apps.cache import invalidate_cache
from .apps.oidc_settings import format_duration
from .apps.registry import idp_entity_id, metadata_summary, slugify
from .apps.settings import default_settings
from .apps.validation import RESERVED_SLUGS, parse_metadata_or_refuse, validate_slug
from .field_schema import current_schema
from .metadata_refresh import MIN_INTERVAL_S, VALID_UNTIL_FACTOR, dangerous_change, validate_url

log = logging.getLogger("idp.feeds")

NS_MDATTR = "urn:oasis:names:tc:SAML:metadata:attribute"
_ENTITY = f"{{{NS_MD}}}EntityDescriptor"
_SP = f"{{{NS_MD}}}SPSSODescriptor"
_ATTR_PATH = f"{{{NS_MD}}}Extensions/{{{NS_MDATTR}}}EntityAttributes/{{{NS_SAML}}}Attribute"
_VALUE = f"{{{NS_SAML}}}AttributeValue"
# disabling at least this many apps, and more than half of the feed's, waits for `idp feeds sync NAME --yes`
MASS_DISABLE_MIN = 3
BATCH = 500
JOB_KIND = "feeds.sync"
LISTED = 200          # entityIDs per category named in the feed.sync audit row (counts are always complete)
MAX_ERRORS = 50


@dataclass(slots=True)
class SyncResult:
    outcome: str                  # synced | unchanged | refused
    message: str
    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    diff: dict[str, list[str]] = field(default_factory=dict)   # category -> entityIDs (first LISTED)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "message": self.message, "reason": self.reason, "counts": self.counts,
                "diff": self.diff, "errors": self.errors}


def _settings() -> Any:
    return component("idp.settings")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ configuration

def parse_selection(items: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    """--select ENTITY-ATTRIBUTE=VALUE (the attribute's Name, then its value: the first '=' after the name's
    scheme separates them, so http://macedir.org/entity-category=http://refeds.org/... reads as meant)."""
    out: list[dict[str, str]] = []
    for raw in items:
        text = raw.strip()
        name, sep, value = text.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ServiceError(f"--select {raw!r}: expected ENTITY-ATTRIBUTE=VALUE, e.g. "
                               "http://macedir.org/entity-category=http://refeds.org/category/research-and-"
                               "scholarship", field="select")
        if len(text) > 2048:
            raise ServiceError("--select is at most 2048 characters", field="select")
        item = {"attribute": name.strip(), "value": value.strip()}
        if item not in out:
            out.append(item)
    return out


def add_feed(url: str, *, trust_anchor_pem: str, name: str | None = None,
             selection: list[dict[str, str]] | None = None,
             entities: list[str] | None = None, max_interval_s: int | None = None) -> Feed:
    """Register a feed; nothing is fetched yet (the next sync, `idp feeds sync`, or the worker, does)."""
    url = validate_url(url, "feed URL")
    try:
        load_trust_anchor(trust_anchor_pem)
    except ValueError as exc:
        raise ServiceError(str(exc), field="trust_anchor") from None
    if name is None:
        name = slugify(urlsplit(url).hostname or "feed")
    validate_slug(name)
    if db.session.scalar(select(Feed.id).where(Feed.name == name)) is not None:
        raise ServiceError(f"a feed named {name!r} exists already (choose another with --name)", field="name")
    ids = []
    for e in entities or []:
        e = e.strip()
        if not e or len(e) > 1024:
            raise ServiceError("--entity takes an entityID of 1 to 1024 characters", field="entity")
        if e not in ids:
            ids.append(e)
    ceiling = _settings().metadata_refresh_max_interval_s
    interval = ceiling if max_interval_s is None else max_interval_s
    if not MIN_INTERVAL_S <= interval <= ceiling:
        raise ServiceError(f"the maximum interval must be between {format_duration(MIN_INTERVAL_S)} and "
                           f"{format_duration(ceiling)} (IDP_METADATA_REFRESH_MAX_INTERVAL)", field="max_interval")
    feed = Feed(name=name, url=url, trust_anchor_pem=trust_anchor_pem.strip() + "\n", selection=selection or [],
                entities=ids, max_interval_s=interval, failures=0, counts={}, created_at=utcnow(),
                next_due_at=utcnow())
    db.session.add(feed)
    audit.record("feed.add", "feed", name, after=_settings_view(feed))
    db.session.flush()
    return feed


def _settings_view(feed: Feed) -> dict[str, Any]:
    return {"url": feed.url, "trust_anchor_sha256": cert_info(feed.trust_anchor_pem).fingerprint,
            "select": feed.selection, "entities": feed.entities, "max_interval": format_duration(feed.max_interval_s)}


def get_feed(ref: str) -> Feed:
    """A feed by name or id."""
    feed = db.session.scalar(select(Feed).where(Feed.name == ref))
    if feed is None and ref.isdigit():
        feed = db.session.get(Feed, int(ref))
    if feed is None:
        raise ServiceError(f"no feed named {ref!r} (idp feeds list)", field="feed")
    return feed


def list_feeds() -> list[Feed]:
    return list(db.session.scalars(select(Feed).order_by(Feed.name)))


def describe(feed: Feed) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat().replace("+00:00", "Z") if v else None

    held = db.session.scalar(select(func.count()).select_from(FeedMember)
                             .where(FeedMember.feed_id == feed.id, FeedMember.held_xml.is_not(None)))
    apps = db.session.scalar(select(func.count()).select_from(FeedMember).where(FeedMember.feed_id == feed.id))
    return {"id": feed.id, "name": feed.name, **_settings_view(feed), "apps": apps, "held": held,
            "last_synced": iso(feed.last_synced_at), "next_due": iso(feed.next_due_at),
            "last_outcome": feed.last_outcome, "last_error": feed.last_error, "counts": feed.counts or {}}


def remove_feed(feed: Feed, *, remove_apps: bool = False) -> int:
    """Remove a feed. Its apps stay as manual apps (source "cli", no longer synced) unless `remove_apps`; returns
    how many apps were kept or removed."""
    rows = list(db.session.execute(select(FeedMember.app_id).where(FeedMember.feed_id == feed.id)).scalars())
    n = 0
    for start in range(0, len(rows), BATCH):
        for app in db.session.scalars(select(ConnectedApp).where(ConnectedApp.id.in_(rows[start:start + BATCH]))):
            n += 1
            if remove_apps:
                audit.record("app.remove", "app", app.slug, before={"entity_id": app.entity_id, "name": app.name,
                                                                    "feed": feed.name})
                db.session.delete(app)
            else:
                app.source, app.source_ref = "cli", None
                app.version += 1
    audit.record("feed.remove", "feed", feed.name, before=_settings_view(feed),
                 after={"apps": "removed" if remove_apps else "kept as manual apps", "count": n})
    db.session.delete(feed)
    invalidate_cache()
    db.session.flush()
    return n


# ------------------------------------------------------------------ reading the aggregate

@dataclass(slots=True)
class FeedEntity:
    entity_id: str
    xml: bytes                                  # the EntityDescriptor alone, namespaces declared
    is_sp: bool                                 # has a SAML 2.0 SPSSODescriptor
    attributes: list[tuple[str, str]]           # entity attributes (Name, value)


def iter_entities(data: bytes) -> Iterator[FeedEntity]:
    """The EntityDescriptors of an aggregate in document order (nested EntitiesDescriptors included), each
    cleared once handed out, so memory stays bounded whatever the number of entities. `data` is the document
    verified by verify_aggregate: the same bytes, the same hardened parser options."""
    context = etree.iterparse(io.BytesIO(data), events=("end",), tag=_ENTITY, resolve_entities=False,
                              no_network=True, load_dtd=False, huge_tree=False, remove_comments=True,
                              remove_pis=True, collect_ids=False)
    for _, el in context:
        entity_id = (el.get("entityID") or "").strip()
        is_sp = any(NS_SAMLP in (r.get("protocolSupportEnumeration") or "").split() for r in el.iterchildren(_SP))
        attrs = [(a.get("Name") or "", (v.text or "").strip()) for a in el.iterfind(_ATTR_PATH)
                 for v in a.iterchildren(_VALUE)]
        xml = etree.tostring(el) if is_sp else b""
        yield FeedEntity(entity_id, xml, is_sp, attrs)
        el.clear()
        parent = el.getparent()
        while parent is not None and el.getprevious() is not None:   # the siblings already handled
            del parent[0]
    del context


def selected(wanted: set[tuple[str, str]], entities: set[str], entity: FeedEntity) -> bool:
    """An SP is selected when its entityID is named, or it carries one of the wanted entity attributes (Name,
    value); a feed with neither selects every SP."""
    if not entity.is_sp:
        return False
    if not wanted and not entities:
        return True
    return entity.entity_id in entities or any(a in wanted for a in entity.attributes)


# ------------------------------------------------------------------ sync

@dataclass(slots=True)
class _Member:
    id: int
    app_id: int
    sha: str
    absent: bool
    disabled_by_feed: bool
    held_sha: str | None


class _Sync:
    def __init__(self, feed: Feed, *, dry_run: bool, approve: bool, commit: Callable[[], None] | None,
                 now: datetime) -> None:
        self.feed_id, self.name, self.url = feed.id, feed.name, feed.url
        self.selection, self.entities = list(feed.selection or []), list(feed.entities or [])
        self.dry_run, self.approve, self.commit, self.now = dry_run, approve, commit, now
        self.members = {row.entity_id: _Member(row.id, row.app_id, row.entity_sha256, row.absent,
                                               row.disabled_by_feed, row.held_sha256)
                        for row in db.session.execute(
                            select(FeedMember.id, FeedMember.app_id, FeedMember.entity_id, FeedMember.entity_sha256,
                                   FeedMember.absent, FeedMember.disabled_by_feed, FeedMember.held_sha256)
                            .where(FeedMember.feed_id == feed.id))}
        self.slugs: set[str] | None = None
        self.idp_ids: set[str] | None = None
        self.seen: set[str] = set()
        self.diff: dict[str, list[str]] = {}
        self.counts = {"entities": 0, "sps": 0, "selected": 0, "added": 0, "updated": 0, "unchanged": 0,
                       "disabled": 0, "enabled": 0, "returned": 0, "held": 0, "conflicts": 0, "invalid": 0,
                       "disable_held": 0}
        self.errors: list[str] = []

    def note(self, category: str, entity_id: str) -> None:
        self.counts[category] += 1
        listed = self.diff.setdefault(category, [])
        if len(listed) < LISTED:
            listed.append(entity_id)

    def error(self, category: str, entity_id: str, message: str) -> None:
        self.note(category, entity_id)
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{entity_id}: {message}"[:500])

    def run(self, data: bytes) -> None:
        batch: list[FeedEntity] = []
        named = set(self.entities)
        wanted = {(str(x["attribute"]), str(x["value"])) for x in self.selection}
        for entity in iter_entities(data):
            self.counts["entities"] += 1
            if entity.is_sp:
                self.counts["sps"] += 1
            if not selected(wanted, named, entity):
                continue
            if entity.entity_id in self.seen or not entity.entity_id:
                self.error("invalid", entity.entity_id, "the entityID is empty or appears twice in the feed")
                continue
            self.seen.add(entity.entity_id)
            self.counts["selected"] += 1
            batch.append(entity)
            if len(batch) >= BATCH:
                self.batch(batch)
                batch = []
        if batch:
            self.batch(batch)
        self.disable_missing()

    def _flush(self) -> None:
        if self.dry_run:
            return
        try:
            db.session.flush()
        except IntegrityError:   # another sync of this feed (or an admin) registered the same entity meanwhile
            raise ServiceError(f"feed {self.name}: an app was registered by another sync at the same time; sync "
                               "again", field="feed") from None
        if self.commit is not None:
            self.commit()

    def batch(self, batch: list[FeedEntity]) -> None:
        known = [e for e in batch if e.entity_id in self.members]
        new = [e for e in batch if e.entity_id not in self.members]
        apps = {a.id: a for a in db.session.scalars(
            select(ConnectedApp).where(ConnectedApp.id.in_([self.members[e.entity_id].app_id for e in known])))}
        rows = {m.id: m for m in db.session.scalars(
            select(FeedMember).where(FeedMember.id.in_([self.members[e.entity_id].id for e in known])))}
        for e in known:
            m = self.members[e.entity_id]
            self.update(e, m, apps.get(m.app_id), rows.get(m.id))
        if new:
            taken = set(db.session.scalars(select(ConnectedApp.entity_id)
                                           .where(ConnectedApp.entity_id.in_([e.entity_id for e in new]))))
            created: list[tuple[FeedEntity, ConnectedApp]] = []
            for e in new:
                if e.entity_id in taken:
                    self.error("conflicts", e.entity_id, "an app not from this feed has this entityID; left alone")
                    continue
                app = self.add(e)
                if app is not None:
                    created.append((e, app))
            if created and not self.dry_run:
                db.session.flush()   # the apps' ids
                for e, app in created:
                    db.session.add(FeedMember(feed_id=self.feed_id, app_id=app.id, entity_id=e.entity_id,
                                              entity_sha256=_sha256(e.xml), absent=False,
                                              disabled_by_feed=False))
        self._flush()

    def parse(self, e: FeedEntity) -> SpMetadata | None:
        """parse_app_metadata, with the IdP's own entity IDs (its own and every per-app issuer) read once per
        sync instead of once per entity."""
        if self.idp_ids is None:
            self.idp_ids = {idp_entity_id()} | {
                str(s["issuer"]) for s in db.session.scalars(select(ConnectedApp.settings))
                if isinstance(s, dict) and s.get("issuer")}
        try:
            sp = parse_metadata_or_refuse(e.xml, e.entity_id)
        except (ServiceError, MetadataError) as exc:
            self.error("invalid", e.entity_id, str(exc))
            return None
        if sp.entity_id in self.idp_ids:
            self.error("invalid", e.entity_id, "this is an entity ID of this IdP (its own or an app's issuer)")
            return None
        if sp.valid_until is not None and sp.valid_until <= self.now:
            self.error("invalid", e.entity_id, f"its validUntil ({sp.valid_until:%Y-%m-%d %H:%M} UTC) has passed")
            return None
        return sp

    def unique_slug(self, entity_id: str) -> str:
        if self.slugs is None:   # all slugs once, then kept up to date: no query per new app
            self.slugs = set(db.session.scalars(select(ConnectedApp.slug)))
        base = slugify(entity_id)
        if base in RESERVED_SLUGS:
            base = f"{base}-app"
        slug, n = base, 2
        while slug in self.slugs:
            slug = f"{base[:58]}-{n}"
            n += 1
        self.slugs.add(slug)
        return slug

    def add(self, e: FeedEntity) -> ConnectedApp | None:
        sp = self.parse(e)
        if sp is None:
            return None
        self.note("added", e.entity_id)
        if self.dry_run:
            return None
        slug = self.unique_slug(e.entity_id)
        app = ConnectedApp(slug=slug, name=(sp.display_name or sp.entity_id)[:200], entity_id=sp.entity_id,
                           enabled=True, metadata_xml=e.xml.decode("utf-8", errors="replace"), sp=sp.to_dict(),
                           settings=default_settings(sp, current_schema()).to_dict(), source="feed",
                           source_ref=f"feed:{self.name}", version=1)
        db.session.add(app)
        audit.record("app.add", "app", slug, after={"entity_id": sp.entity_id, "name": app.name, "source": "feed",
                                                    "source_ref": app.source_ref})
        return app

    def update(self, e: FeedEntity, m: _Member, app: ConnectedApp | None, row: FeedMember | None) -> None:
        if app is None or row is None:
            return
        sha = _sha256(e.xml)
        if m.absent:   # back in the feed (or selected again): the feed re-enables what it disabled, only that
            self.note("enabled" if m.disabled_by_feed else "returned", e.entity_id)
            if not self.dry_run:
                row.absent = False
                if m.disabled_by_feed:
                    row.disabled_by_feed = False
                    if not app.enabled:
                        app.enabled = True
                        app.version += 1
                    audit.record("app.feed_enabled", "app", app.slug, after={"feed": self.name, "enabled": True})
        if sha == m.sha and m.held_sha is None:
            self.counts["unchanged"] += 1
            return
        if m.held_sha == sha and not self.approve:   # the held change is still what the feed says
            self.counts["held"] += 1
            return
        new_sp = self.parse(e)
        if new_sp is None:
            return
        danger = dangerous_change(SpMetadata.from_dict(app.sp or {}), new_sp)
        if danger and not self.approve:
            self.note("held", e.entity_id)
            if not self.dry_run:
                row.held_xml, row.held_reason, row.held_sha256 = e.xml.decode("utf-8", "replace"), danger, sha
                audit.record("app.metadata_held", "app", app.slug, after={"reason": danger, "feed": self.name})
            return
        self.note("updated", e.entity_id)
        if self.dry_run:
            return
        # as apps.update_metadata, with the document parsed once (above)
        text = e.xml.decode("utf-8", errors="replace")
        if text != app.metadata_xml:
            before = metadata_summary(app.sp)
            app.metadata_xml, app.sp = text, new_sp.to_dict()
            audit.record("app.metadata", "app", app.slug, before=before, after=metadata_summary(app.sp))
            app.source_ref = f"feed:{self.name}"
            app.version += 1
        row.entity_sha256, row.held_xml, row.held_reason, row.held_sha256 = sha, None, None, None

    def disable_missing(self) -> None:
        gone = [(eid, m) for eid, m in self.members.items() if eid not in self.seen and not m.absent]
        present = sum(1 for m in self.members.values() if not m.absent)
        if not self.approve and len(gone) >= MASS_DISABLE_MIN and len(gone) * 2 > present:
            # a signed feed that suddenly lists (or selects) far fewer SPs is more likely a publishing accident or a
            # changed selection than half the federation leaving: nothing is disabled until an admin confirms
            self.counts["disable_held"] = len(gone)
            self.errors.append(f"{len(gone)} of the {present} apps of this feed would be disabled: held; "
                               f"`idp feeds sync {self.name} --yes` confirms")
            if not self.dry_run:
                audit.record("feed.disable_held", "feed", self.name,
                             after={"would_disable": len(gone), "of": present,
                                    "entities": [eid for eid, _ in gone[:LISTED]]})
            return
        for start in range(0, len(gone), BATCH):
            part = gone[start:start + BATCH]
            apps = {a.id: a for a in db.session.scalars(
                select(ConnectedApp).where(ConnectedApp.id.in_([m.app_id for _, m in part])))}
            rows = {r.id: r for r in db.session.scalars(
                select(FeedMember).where(FeedMember.id.in_([m.id for _, m in part])))}
            for eid, m in part:
                self.note("disabled", eid)
                app, row = apps.get(m.app_id), rows.get(m.id)
                if self.dry_run or app is None or row is None:
                    continue
                row.absent = True
                row.held_xml = row.held_reason = row.held_sha256 = None
                if app.enabled:   # (an app an admin disabled stays theirs to enable)
                    app.enabled, row.disabled_by_feed = False, True
                    app.version += 1
                audit.record("app.feed_disabled", "app", app.slug,
                             after={"feed": self.name, "enabled": False,
                                    "reason": "no longer in the feed or no longer selected"})
            self._flush()


def _times_delay(feed: Feed, valid_until: datetime | None, cache: timedelta | None, now: datetime) -> datetime:
    delay = timedelta(seconds=feed.max_interval_s)
    if cache is not None:
        delay = min(delay, cache)
    if valid_until is not None and valid_until > now:
        delay = min(delay, (valid_until - now) * VALID_UNTIL_FACTOR)
    return now + max(delay, timedelta(seconds=MIN_INTERVAL_S))


def sync(feed: Feed, *, dry_run: bool = False, approve: bool = False, force: bool = False,
         commit: Callable[[], None] | None = None, now: datetime | None = None) -> SyncResult:
    """Fetch, verify and apply the feed (module docstring). `commit` is called after each batch (None: the
    caller commits once at the end). `dry_run` fetches and verifies, says what would change, and writes
    nothing (not even the validators). `approve` applies held changes. `force` fetches unconditionally and
    re-reads an unchanged document."""
    now = now or utcnow()
    s = _settings()
    feed_id = feed.id
    from .fetch import fetch_metadata_conditional

    conditional = feed.fetched_sha256 is not None and not force and not dry_run and not approve
    try:
        answer = fetch_metadata_conditional(
            feed.url, etag=feed.etag if conditional else None,
            last_modified=feed.last_modified if conditional else None,
            allow_private=s.metadata_fetch_allow_private, timeout=s.feed_fetch_timeout_s, max_bytes=s.feed_max_bytes)
    except ServiceError as exc:
        return _refused(feed, "fetch_failed", str(exc), now, dry_run)
    if answer.not_modified:
        return _unchanged(feed, "not modified (HTTP 304)", now, dry_run, None, None)
    data = answer.body or b""
    try:
        times = verify_aggregate(data, feed.trust_anchor_pem, max_bytes=s.feed_max_bytes)
        check_valid_until(times.valid_until, now, max_validity=timedelta(days=s.metadata_max_validity_days))
    except TrustError as exc:
        return _refused(feed, exc.code, str(exc), now, dry_run)
    sha = _sha256(data)
    if sha == feed.fetched_sha256 and not force and not approve and not dry_run:
        feed.etag, feed.last_modified = answer.etag, answer.last_modified
        return _unchanged(feed, "the document is unchanged", now, dry_run, times.valid_until, times.cache_duration)
    job = _Sync(feed, dry_run=dry_run, approve=approve, commit=commit, now=now)
    try:
        job.run(data)
    except etree.XMLSyntaxError as exc:   # cannot happen on the verified bytes; refused all the same
        return _refused(db.session.get(Feed, feed_id) or feed, "metadata_invalid", f"unreadable: {exc}", now, dry_run)
    del data
    feed = db.session.get(Feed, feed_id) or feed   # (expired by the batches' commits)
    changed: dict[str, list[str]] = {k: job.diff[k] for k in ("added", "updated", "held", "disabled",
                                                                          "enabled", "returned")
                                     if k in job.diff}
    summary = ", ".join(f"{job.counts[k]} {k}" for k in ("added", "updated", "unchanged", "held", "disabled",
                                                           "enabled", "returned", "conflicts", "invalid",
                                                           "disable_held")
                        if job.counts[k])
    result = SyncResult("synced", f"{job.counts['selected']} of {job.counts['sps']} SPs selected"
                        + (f": {summary}" if summary else ""), counts=dict(job.counts), diff=changed,
                        errors=job.errors)
    if dry_run:
        result.message = "dry run, nothing written: " + result.message
        return result
    feed.etag, feed.last_modified, feed.fetched_sha256 = answer.etag, answer.last_modified, sha
    feed.last_synced_at, feed.last_outcome, feed.last_error, feed.failures = now, "synced", None, 0
    feed.counts = dict(job.counts)
    feed.next_due_at = _times_delay(feed, times.valid_until, times.cache_duration, now)
    audit.record("feed.sync", "feed", feed.name, after={"counts": job.counts, "diff": changed,
                                                        "errors": job.errors[:10]})
    invalidate_cache()
    db.session.flush()
    log.info("feed %s synced: %s", feed.name, result.message)
    return result


def _unchanged(feed: Feed, message: str, now: datetime, dry_run: bool, valid_until: datetime | None,
               cache: timedelta | None) -> SyncResult:
    if not dry_run:
        feed.last_synced_at, feed.last_outcome, feed.last_error, feed.failures = now, "unchanged", None, 0
        feed.next_due_at = _times_delay(feed, valid_until, cache, now)
    return SyncResult("unchanged", message, counts=dict(feed.counts or {}))


def _refused(feed: Feed, code: str, message: str, now: datetime, dry_run: bool) -> SyncResult:
    message = message[:2000]
    if not dry_run:
        first = feed.last_outcome != "refused" or feed.last_error != message
        feed.last_outcome, feed.last_error = "refused", message
        feed.failures = (feed.failures or 0) + 1
        delay = min(feed.max_interval_s, MIN_INTERVAL_S * 2 ** min(feed.failures - 1, 20))
        feed.next_due_at = now + timedelta(seconds=max(MIN_INTERVAL_S, delay))
        if first:   # once per run of the same failure
            audit.record("feed.sync_failed", "feed", feed.name, after={"reason": code, "error": message,
                                                                       "url": feed.url})
    log.warning("feed %s refused (%s): %s", feed.name, code, message)
    return SyncResult("refused", message, reason=code)


# ------------------------------------------------------------------ the schedule

def due_feeds(now: datetime | None = None) -> list[Feed]:
    now = now or utcnow()
    return list(db.session.scalars(select(Feed).where(Feed.next_due_at <= now).order_by(Feed.next_due_at)))


def _sync_job(payload: dict[str, Any]) -> None:
    """The worker's job: sync one feed when it is still due, committing after each batch of entities (a
    failure part-way leaves the batches before it applied; the next run converges, as every step is
    idempotent)."""
    feed = db.session.get(Feed, int(payload["feed_id"]))
    if feed is None or feed.next_due_at is None or feed.next_due_at > utcnow():
        return
    sync(feed, commit=db.session.commit)


outbox.handler(JOB_KIND)(_sync_job)


@outbox.periodic
def schedule_syncs() -> None:
    """Called by the worker about once a minute: one sync job per due feed (one pending job per feed)."""
    for feed in due_feeds():
        outbox.enqueue_once(JOB_KIND, f"feed:{feed.id}", {"feed_id": feed.id})
