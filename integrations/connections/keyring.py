"""The FERNET_KEYS that encrypt secrets at rest, named by fingerprint, and re-encryption.

django-fernet-fields encrypts with the first key of FERNET_KEYS and decrypts with any of them
(MultiFernet). A Fernet token does not say which key made it, so an operator who wants to drop
an old key cannot tell from the rows whether any still needs it. Here each key has a
fingerprint (the first 16 hex digits of the SHA-256 of the derived Fernet key: it names the
key without revealing it), a credential version stores the fingerprint of the key that
encrypted it, and `reencrypt` (manage.py reencrypt_secrets) re-encrypts every encrypted column
of every model (credential versions, webhook subscription secrets) under the newest key,
reporting which keys the rows needed before. MultiFernet.rotate re-encrypts a token without
the plaintext ever becoming a Python string, and each row is written with a compare-and-set
on its old ciphertext, so a row changed meanwhile (a rotation) is left to its new writer.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction
from fernet_fields import EncryptedField, hkdf

UNKNOWN = "unknown"  # the fingerprint of a token no configured key decrypts


def derived_keys() -> list[bytes]:
    """FERNET_KEYS as the fields derive them (fernet_fields.EncryptedField.fernet_keys)."""
    keys = getattr(settings, "FERNET_KEYS", None) or [settings.SECRET_KEY]
    if getattr(settings, "FERNET_USE_HKDF", True):
        return [hkdf.derive_fernet_key(key) for key in keys]
    return [key.encode() if isinstance(key, str) else key for key in keys]


def fingerprint_of(derived: bytes) -> str:
    return hashlib.sha256(derived).hexdigest()[:16]


def fingerprints() -> list[str]:
    """The fingerprints of FERNET_KEYS, newest (the one that encrypts) first."""
    return [fingerprint_of(key) for key in derived_keys()]


def newest_fingerprint() -> str:
    return fingerprints()[0]


def key_of(token: bytes) -> str:
    """The fingerprint of the configured key that decrypts `token`, or UNKNOWN."""
    for derived in derived_keys():
        try:
            Fernet(derived).decrypt(token)
        except InvalidToken:
            continue
        return fingerprint_of(derived)
    return UNKNOWN


def forget_cached_keys(**kwargs: Any) -> None:
    """The fields cache their Fernet on first use; a change of FERNET_KEYS (a test's settings
    override, setting_changed) must reach them."""
    if kwargs.get("setting") not in (None, "FERNET_KEYS", "SECRET_KEY", "FERNET_USE_HKDF"):
        return
    for _, column in encrypted_columns():
        for name in ("keys", "fernet_keys", "fernet"):
            column.__dict__.pop(name, None)


def encrypted_columns() -> Iterator[tuple[type[models.Model], EncryptedField]]:
    for model in apps.get_models():
        for column in model._meta.concrete_fields:
            if isinstance(column, EncryptedField):
                yield model, column


@dataclass
class ColumnReport:
    """One encrypted column: its rows, by the key each needed, and what was done."""

    label: str
    rows: int = 0
    reencrypted: int = 0
    needed: Counter[str] = field(default_factory=Counter)  # fingerprint -> rows, before
    changed_meanwhile: int = 0  # rewritten by someone else while this ran: left to them


@dataclass
class Report:
    newest: str
    columns: list[ColumnReport]

    @property
    def unreadable(self) -> int:
        return sum(c.needed[UNKNOWN] for c in self.columns)


def reencrypt(*, batch: int = 500) -> Report:
    """Re-encrypt every encrypted column's rows under FERNET_KEYS[0]. Idempotent: a row
    already under it is read, not written; a second run re-encrypts nothing."""
    keys = derived_keys()
    every = MultiFernet([Fernet(key) for key in keys])
    report = Report(newest=fingerprint_of(keys[0]), columns=[])
    for model, column in encrypted_columns():
        report.columns.append(_reencrypt_column(model, column, report.newest, every, batch))
    return report


def _reencrypt_column(
    model: type[models.Model],
    column: EncryptedField,
    newest_print: str,
    every: MultiFernet,
    batch: int,
) -> ColumnReport:
    meta = model._meta
    done = ColumnReport(label=f"{meta.label}.{column.name}")
    quote = connection.ops.quote_name
    assert meta.pk is not None and meta.pk.column and column.column
    table, pk, col = quote(meta.db_table), quote(meta.pk.column), quote(column.column)
    fingerprinted = any(f.name == "key_fingerprint" for f in meta.concrete_fields)
    last: Any = None
    while True:
        where, params = (f"WHERE {pk} > %s", [last]) if last is not None else ("", [])
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {pk}, {col} FROM {table} {where} ORDER BY {pk} LIMIT %s",
                [*params, batch],
            )
            rows = cursor.fetchall()
        if not rows:
            return done
        last = rows[-1][0]
        for row_pk, raw in rows:
            if raw is None:
                continue
            token = bytes(raw)
            done.rows += 1
            needed = key_of(token)
            done.needed[needed] += 1
            if needed in (newest_print, UNKNOWN):
                continue
            fresh = every.rotate(token)
            sets = f"{col} = %s" + (", key_fingerprint = %s" if fingerprinted else "")
            values: list[Any] = [fresh]
            values += [newest_print] if fingerprinted else []
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET {sets} WHERE {pk} = %s AND {col} = %s",
                    [*values, row_pk, token],
                )
                if cursor.rowcount == 1:
                    done.reencrypted += 1
                else:
                    done.changed_meanwhile += 1
