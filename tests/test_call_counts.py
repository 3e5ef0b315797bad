"""The benchmark's call-count bars, asserted (counts, never times), so a regression fails CI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from helpers import declared, make_users
from jets_deploy_iam.reconcile import Reconciler
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def users(n: int, start: int = 0) -> list[str]:
    return [f"user{i:04d}" for i in range(start, start + n)]


@pytest.fixture
def thousand(iam: IAMClient, strict: StrictIam) -> Reconciler:
    make_users(iam, users(1050))
    reconciler = Reconciler(iam)
    reconciler.create(declared(Users=users(1000)))
    strict.reset()
    return reconciler


def test_no_op_update_of_1000_members(thousand: Reconciler, strict: StrictIam) -> None:
    spec = declared(Users=users(1000))
    thousand.update(spec, spec, "Jets")
    assert len(strict.writes) == 0
    assert len(strict.reads) <= 10


def test_no_op_update_reads_pages_even_when_iam_returns_short_ones(
    thousand: Reconciler, strict: StrictIam
) -> None:
    strict.page_cap = 100
    spec = declared(Users=users(1000))
    thousand.update(spec, spec, "Jets")
    assert len(strict.writes) == 0
    assert strict.actions().count("GetGroup") == 10
    assert len(strict.reads) <= 13


def test_update_adding_25_and_removing_25_of_1000(thousand: Reconciler, strict: StrictIam) -> None:
    old = declared(Users=users(1000))
    new = declared(Users=users(975, 25) + users(25, 1000))
    thousand.update(new, old, "Jets")
    assert len(strict.writes) == 50
    assert sorted({c.action for c in strict.writes}) == ["AddUserToGroup", "RemoveUserFromGroup"]


def test_400_member_create_reads_and_concurrency(iam: IAMClient, strict: StrictIam) -> None:
    make_users(iam, users(400))
    strict.reset()
    strict.latency = 0.005  # long enough for calls to overlap
    Reconciler(iam).create(declared(Users=users(400)))
    assert len(strict.reads) <= 20
    assert len(strict.writes) == 402
    assert 2 <= strict.max_in_flight <= 8


def test_delete_of_100_members_makes_one_call_per_item(iam: IAMClient, strict: StrictIam) -> None:
    make_users(iam, users(100))
    Reconciler(iam).create(declared(Users=users(100)))
    strict.reset()
    Reconciler(iam).delete("Jets")
    assert len(strict.writes) == 102  # 100 members, 1 inline policy, the group
    assert len(strict.reads) <= 5
