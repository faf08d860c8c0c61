"""The capability check (``lsnwal store-check``, and every WAL open that ships).

Owns the probes that decide whether a store can hold a WAL archive safely.
Shipping relies on the store *enforcing* what it is asked: a store that
silently ignores ``If-None-Match: *`` or a wrong CRC32C would let history be
overwritten or damaged bytes be stored, so it is refused — silently ignoring
a condition is worse than refusing it. Rules:

* Probes write only under ``PREFIX/.lsnwal-probe/`` with a random name and
  remove what they wrote, whatever the outcome.
* Every probe runs; the report lists each one with what was seen.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from .base import (
    ObjectStore,
    StoreCapabilityError,
    StoreConflictError,
    StoreError,
    StoreIntegrityError,
    crc32c,
)
from .url import probe_prefix


@dataclass
class Probe:
    """One capability and what the store did."""

    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    """The outcome of a capability check."""

    location: str
    probes: list[Probe] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every probe passed."""
        return all(p.ok for p in self.probes)

    def failures(self) -> list[Probe]:
        """The probes that failed."""
        return [p for p in self.probes if not p.ok]


def check_store(store: ObjectStore, prefix: str) -> CheckReport:
    """Probe ``store`` under ``prefix``; transport and auth errors propagate."""
    report = CheckReport(store.location)
    add = report.probes.append
    base = probe_prefix(prefix) + os.urandom(8).hex()
    key, bad_key, cas_key = base + "-obj", base + "-bad", base + "-cas"
    data = os.urandom(64) + b"lsnwal capability probe"
    try:
        created = store.put_if_absent(key, data, crc32c(data), {"lsnwal-probe": "1"})
        add(Probe("create-if-absent", created, "created" if created else "key already existed"))
        other = os.urandom(len(data))
        second = store.put_if_absent(key, other, crc32c(other))
        kept = store.get(key) == data
        add(Probe("refuse-overwrite", not second and kept,
                  "a second create-only put was refused (412)" if not second and kept else
                  "the store ACCEPTED a second create-only put (If-None-Match ignored)"
                  + ("" if kept else " and replaced the content")))
        try:
            wrong = store.put_if_absent(bad_key, data, crc32c(data) ^ 0x5A5A5A5A)
            add(Probe("checksum-enforced", False,
                      "a put with a wrong CRC32C was stored" if wrong else
                      "a put with a wrong CRC32C was not refused with a checksum error"))
        except StoreIntegrityError:
            add(Probe("checksum-enforced", True, "a wrong CRC32C was refused (BadDigest)"))
        ranged = store.get(key, 5, 21) == data[5:21]
        suffix = store.get(key, -16) == data[-16:]
        verdict = {True: "ok", False: "WRONG"}
        add(Probe("ranged-read", ranged and suffix,
                  f"range {verdict[ranged]}, suffix range {verdict[suffix]}"))
        listed = [o.key for o in store.list(probe_prefix(prefix))]
        after = [o.key for o in store.list(probe_prefix(prefix), start_after=key)]
        list_ok = key in listed and key not in after
        add(Probe("list-after", list_ok,
                  "listing and start-after ok" if list_ok else
                  f"listing wrong (probe listed: {key in listed}, after itself: {key in after})"))
        info = store.head(key)
        head_ok = info is not None and info.size == len(data) \
            and info.crc32c in (None, crc32c(data))
        add(Probe("head", head_ok, "size and checksum ok" if head_ok else f"head returned {info}"))
        etag = store.put_if_match(cas_key, b"1", None)
        try:
            store.put_if_match(cas_key, b"2", '"stale-etag"')
            add(Probe("compare-and-swap", False, "a put with a stale If-Match was accepted"))
        except StoreConflictError:
            try:
                store.put_if_match(cas_key, b"3", etag)
                add(Probe("compare-and-swap", True,
                          "If-Match enforced (stale refused, current ok)"))
            except StoreConflictError:
                add(Probe("compare-and-swap", False, "a put with the current ETag was refused"))
    finally:
        for k in (key, bad_key, cas_key):
            with contextlib.suppress(StoreError):
                store.delete(k)
    return report


def require_capabilities(store: ObjectStore, prefix: str) -> CheckReport:
    """Run the check and raise ``StoreCapabilityError`` naming every failed probe."""
    report = check_store(store, prefix)
    if not report.ok:
        failed = "; ".join(f"{p.name}: {p.detail}" for p in report.failures())
        raise StoreCapabilityError(
            f"{store.location} cannot hold a WAL archive safely ({failed}); "
            "run `lsnwal store-check` for the full report")
    return report
