"""The scheduler lease in the SQLite store: one row, taken by one process at a time.

A holder renews only its own holding (same holder, same epoch); a lease taken from
another holder gets the next epoch, which fences off everything the previous one
still tries to record (see ``storage``).  Times are this machine's clock: every
process sharing the file runs on it.  Part of ``store.Store``."""

import logging

from .sqlite_records import LEASE_NAME
from .storage import Lease

log = logging.getLogger(__name__)


class SqliteLease:
    def acquire_lease(self, holder, now, ttl, holder_is_gone=None):
        """Take the lease if it is free, expired, already ours, or held by a process
        that ``holder_is_gone(holder)`` says has died.  A lease taken from another
        holder gets the next epoch.  Returns the ``Lease`` held, or None."""

        def write(conn):
            row = conn.execute("SELECT * FROM lease WHERE name = ?", (LEASE_NAME,)).fetchone()
            if row is not None and row["holder"] != holder and row["expires_at"] > now:
                if holder_is_gone is None or not holder_is_gone(row["holder"]):
                    return None
                log.warning("The scheduler %s has died; taking over its lease", row["holder"])
            if row is None:
                epoch, acquired = 1, now
            elif row["holder"] != holder:
                epoch, acquired = row["epoch"] + 1, now
            else:  # ours still, or again after it lapsed with nobody taking it
                epoch, acquired = row["epoch"], row["acquired_at"]
            conn.execute(
                "INSERT INTO lease (name, holder, acquired_at, renewed_at, expires_at, epoch)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " holder = excluded.holder, acquired_at = excluded.acquired_at,"
                " renewed_at = excluded.renewed_at, expires_at = excluded.expires_at,"
                " epoch = excluded.epoch",
                (LEASE_NAME, holder, acquired, now, now + ttl, epoch),
            )
            return Lease(holder, epoch, acquired, now, now + ttl)

        return self._write(write)

    def renew_lease(self, holder, epoch, now, ttl):
        """Extend our own holding; False if the lease is another's (or another epoch)."""
        return self._write(
            lambda conn: (
                conn.execute(
                    "UPDATE lease SET renewed_at = ?, expires_at = ?"
                    " WHERE name = ? AND holder = ? AND epoch = ?",
                    (now, now + ttl, LEASE_NAME, holder, epoch),
                ).rowcount
                == 1
            )
        )

    def release_lease(self, holder, epoch, now):
        """Give the lease up so a standby can take it at once."""
        self._write(
            lambda conn: conn.execute(
                "UPDATE lease SET expires_at = ? WHERE name = ? AND holder = ? AND epoch = ?",
                (now, LEASE_NAME, holder, epoch),
            )
        )

    def lease(self):
        """The lease, or None if no scheduler ever ran."""
        rows = self._read(
            "SELECT holder, epoch, acquired_at, renewed_at, expires_at FROM lease WHERE name = ?",
            (LEASE_NAME,),
        )
        return Lease(**dict(rows[0])) if rows else None
