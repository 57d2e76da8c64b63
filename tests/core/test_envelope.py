"""core.envelope's derived ids."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.envelope import name_uuid, sequence_uuid


@given(namespace=st.uuids(), name=st.text())
def test_it_derives_the_same_id_as_uuid5(namespace: uuid.UUID, name: str) -> None:
    assert name_uuid(namespace, name) == uuid.uuid5(namespace, name)


def test_it_gives_a_version_5_id_of_rfc_4122s_variant() -> None:
    derived = name_uuid(uuid.NAMESPACE_URL, "https://example.com/a")
    assert (derived.version, derived.variant) == (5, uuid.RFC_4122)


NUMBERS = st.integers(min_value=0, max_value=2**62 - 1)


@given(namespace=st.uuids(), scope=st.text(), numbers=st.lists(NUMBERS, min_size=2, unique=True))
def test_it_numbers_a_scopes_ids_in_order_and_derives_the_same_again(
    namespace: uuid.UUID, scope: str, numbers: list[int]
) -> None:
    ids = [sequence_uuid(namespace, scope, n) for n in numbers]

    assert ids == [sequence_uuid(namespace, scope, n) for n in numbers]
    assert len(set(ids)) == len(numbers)
    # Sorted as the numbers are, bytewise (as PostgreSQL orders uuids), and in one prefix.
    by_number = [i for _, i in sorted(zip(numbers, ids, strict=True))]
    assert sorted(ids, key=lambda i: i.bytes) == by_number
    assert len({i.bytes[:8] for i in ids}) == 1
    assert {(i.version, i.variant) for i in ids} == {(8, uuid.RFC_4122)}


@given(namespace=st.uuids(), scopes=st.lists(st.text(), min_size=2, max_size=2, unique=True))
def test_it_gives_other_scopes_other_ids(namespace: uuid.UUID, scopes: list[str]) -> None:
    first, second = (sequence_uuid(namespace, scope, 7) for scope in scopes)
    assert first != second


def test_it_refuses_a_number_its_bits_cannot_hold() -> None:
    with pytest.raises(ValueError, match="2\\*\\*62"):
        sequence_uuid(uuid.NAMESPACE_URL, "scope", 2**62)
    with pytest.raises(ValueError):
        sequence_uuid(uuid.NAMESPACE_URL, "scope", -1)
