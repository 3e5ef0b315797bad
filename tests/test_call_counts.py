"""The benchmark's call-count bars, asserted (counts, never times), so a regression fails CI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from moto import mock_aws

from helpers import Stack, controller_sender, make_users, users
from jets_deploy_iam.config import ReconcileConfig
from jets_deploy_iam.iam.client import make_iam_client
from jets_deploy_iam.registry.store import MemoryRegistry
from strict_iam import StrictIam

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


class TestOneThousandMembers:
    """One 1,000-member group for the class (building it is most of these tests' time): each
    test starts from the group as built, and one that changes members puts them back."""

    @pytest.fixture(scope="class")
    @classmethod
    def built(cls) -> Iterator[tuple[Stack, StrictIam, MemoryRegistry]]:
        layer, registry = StrictIam(), MemoryRegistry()
        with mock_aws(), layer.installed():
            iam = make_iam_client(ReconcileConfig(sleep=lambda _seconds: None))
            make_users(iam, users(1050))
            stack = Stack(controller_sender(iam, registry))
            assert stack.create({"Users": users(1000)}).ok
            yield stack, layer, registry

    @pytest.fixture
    def strict(self, built: tuple[Stack, StrictIam, MemoryRegistry]) -> StrictIam:
        return built[1]

    @pytest.fixture
    def registry_counts(self, built: tuple[Stack, StrictIam, MemoryRegistry]) -> MemoryRegistry:
        return built[2]

    @pytest.fixture
    def thousand(self, built: tuple[Stack, StrictIam, MemoryRegistry]) -> Iterator[Stack]:
        stack, layer, registry = built
        layer.reset()
        layer.page_cap = None
        registry.reads = registry.writes = 0
        yield stack
        if stack.props.get("Users") != users(1000):
            assert stack.update({"Users": users(1000)}).ok

    def test_no_op_update_of_1000_members(
        self, thousand: Stack, strict: StrictIam, registry_counts: MemoryRegistry
    ) -> None:
        assert thousand.update({"Users": users(1000), "Exclusive": "true"}).ok
        assert len(strict.writes) == 0
        assert len(strict.reads) <= 10
        assert (registry_counts.reads, registry_counts.writes) == (1, 1)

    def test_no_op_update_reads_pages_even_when_iam_returns_short_ones(
        self, thousand: Stack, strict: StrictIam
    ) -> None:
        strict.page_cap = 100
        assert thousand.update({"Users": users(1000), "Exclusive": "true"}).ok
        assert len(strict.writes) == 0
        assert strict.actions().count("GetGroup") == 10
        assert len(strict.reads) <= 13

    def test_update_adding_25_and_removing_25_of_1000(
        self, thousand: Stack, strict: StrictIam, registry_counts: MemoryRegistry
    ) -> None:
        assert thousand.update({"Users": users(975, 25) + users(25, 1000)}).ok
        assert len(strict.writes) == 50
        assert sorted({c.action for c in strict.writes}) == [
            "AddUserToGroup",
            "RemoveUserFromGroup",
        ]
        assert (registry_counts.reads, registry_counts.writes) == (
            1,
            2,
        )  # read, write-ahead, outcome


def test_400_member_create_reads_and_concurrency(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, users(400))
    strict.reset()
    strict.latency = 0.005  # long enough for calls to overlap
    assert stack.create({"Users": users(400)}).ok
    assert len(strict.reads) <= 20
    assert len(strict.writes) == 402
    assert 2 <= strict.max_in_flight <= 8


def test_delete_of_100_members_makes_one_call_per_item(
    iam: IAMClient, strict: StrictIam, stack: Stack
) -> None:
    make_users(iam, users(100))
    stack.create({"Users": users(100)})
    strict.reset()
    assert stack.delete().ok
    assert len(strict.writes) == 102  # 100 members, 1 inline policy, the group
    assert len(strict.reads) <= 5
