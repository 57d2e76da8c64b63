"""core.envelope's derived ids."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from core.envelope import name_uuid


@given(namespace=st.uuids(), name=st.text())
def test_it_derives_the_same_id_as_uuid5(namespace: uuid.UUID, name: str) -> None:
    assert name_uuid(namespace, name) == uuid.uuid5(namespace, name)


def test_it_gives_a_version_5_id_of_rfc_4122s_variant() -> None:
    derived = name_uuid(uuid.NAMESPACE_URL, "https://example.com/a")
    assert (derived.version, derived.variant) == (5, uuid.RFC_4122)
