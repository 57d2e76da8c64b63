"""`manage.py reencrypt_secrets [--check]`: every secret stored encrypted (credential versions,
webhook subscription secrets) re-encrypted under the newest key of FERNET_KEYS.

To retire a key: put the new key first in FERNET_KEYS (keeping the old ones after it), deploy,
run this, and check that no row needs the old key's fingerprint any more; then drop it. It is
idempotent: a row already under the newest key is not written, so a second run reports 0.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.connections import keyring


class Command(BaseCommand):
    help = "Re-encrypt every encrypted secret under the newest FERNET_KEYS key; report counts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch", type=int, default=500, help="Rows read per query (default 500)."
        )

    def handle(self, *, batch: int, **options: Any) -> None:
        prints = keyring.fingerprints()
        self.stdout.write("FERNET_KEYS fingerprints, newest (encrypting) first:")
        for position, fingerprint in enumerate(prints):
            self.stdout.write(f"  {position}: {fingerprint}")
        report = keyring.reencrypt(batch=batch)
        for column in report.columns:
            needed = ", ".join(f"{fp}: {n}" for fp, n in sorted(column.needed.items())) or "-"
            line = (
                f"{column.label}: {column.rows} rows, {column.reencrypted} re-encrypted; "
                f"keys needed before: {needed}"
            )
            if column.changed_meanwhile:
                line += f"; {column.changed_meanwhile} changed meanwhile (left as written)"
            self.stdout.write(line)
        total = sum(c.reencrypted for c in report.columns)
        self.stdout.write(f"Re-encrypted {total} values under {report.newest}.")
        if report.unreadable:
            raise CommandError(
                f"{report.unreadable} values decrypt under none of FERNET_KEYS ({keyring.UNKNOWN} "
                "above): restore the key that encrypted them before dropping any."
            )
