"""The byte budget on its own (asyncio, no server): grants, waits in order, refusals naming the
budget, the room kept for ordinary replies, a stream window's lone grant, and resizing."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from heatmap_server.budget import ByteBudget
from heatmap_server.errors import RequestError

MIB = 1 << 20


def test_grants_add_up_and_release_returns_them():
    async def scenario():
        seen = []
        budget = ByteBudget(64 * MIB, on_change=seen.append)
        first = await budget.acquire(3 * MIB)
        second = await budget.acquire(1 * MIB)
        assert budget.in_use == 4 * MIB
        first.release()
        first.release()  # idempotent
        second.resize(2 * MIB)
        assert budget.in_use == 2 * MIB
        second.release()
        return budget.in_use, seen

    in_use, seen = asyncio.run(scenario())
    assert in_use == 0 and seen[-1] == 0


def test_a_reply_larger_than_the_budget_is_refused_at_once_naming_it():
    async def scenario():
        await ByteBudget(16 * MIB, keep_room=False).acquire(17 * MIB, wait_s=60)

    with pytest.raises(RequestError) as caught:
        asyncio.run(scenario())
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "reply budget" in str(caught.value) and "--reply-budget-bytes" in str(caught.value)


def test_large_replies_leave_room_for_ordinary_ones():
    async def scenario():
        budget = ByteBudget(64 * MIB)  # large: over 4 MiB; together at most 40 MiB
        large = [await budget.acquire(20 * MIB) for _ in range(2)]
        with pytest.raises(RequestError, match="waited 0.1 s for room"):
            await budget.acquire(20 * MIB, wait_s=0.1)
        small = [await budget.acquire(4 * MIB, wait_s=0.1) for _ in range(6)]
        return budget.in_use, large, small

    in_use, _, _ = asyncio.run(scenario())
    assert in_use == 64 * MIB


def test_waiters_are_served_in_order_when_room_returns():
    async def scenario():
        budget = ByteBudget(10 * MIB, keep_room=False)
        held = await budget.acquire(8 * MIB)
        order = []

        async def wait(name: str, nbytes: int):
            grant = await budget.acquire(nbytes, wait_s=5)
            order.append(name)
            return grant

        big = asyncio.ensure_future(wait("big", 9 * MIB))
        await asyncio.sleep(0)
        small = asyncio.ensure_future(wait("small", 1 * MIB))  # fits, but waits its turn
        await asyncio.sleep(0.05)
        assert order == []
        held.release()
        (await big).release()
        await small
        return order

    assert asyncio.run(scenario()) == ["big", "small"]


def test_a_window_lets_one_reply_of_any_size_go_alone():
    async def scenario():
        window = ByteBudget(4 * MIB, keep_room=False, lone_grant_any_size=True)
        alone = await window.acquire(9 * MIB)
        with pytest.raises(RequestError):
            await window.acquire(1 * MIB, wait_s=0.05)
        alone.release()
        return await window.acquire(1 * MIB, wait_s=0.05)

    assert asyncio.run(scenario()).nbytes == 1 * MIB


def test_a_cancelled_waiter_leaves_no_trace():
    async def scenario():
        budget = ByteBudget(4 * MIB, keep_room=False)
        held = await budget.acquire(4 * MIB)
        waiter = asyncio.ensure_future(budget.acquire(2 * MIB, wait_s=5))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        held.release()
        return budget.in_use

    assert asyncio.run(scenario()) == 0


def test_ordinary_replies_never_queue_behind_a_large_one_waiting_for_its_share():
    async def scenario():
        budget = ByteBudget(64 * MIB)
        held = await budget.acquire(40 * MIB)  # the whole large share
        large = asyncio.ensure_future(budget.acquire(8 * MIB, wait_s=5))
        await asyncio.sleep(0)
        small = await budget.acquire(2 * MIB, wait_s=0.5)
        assert not large.done()
        held.release()
        return (await large).nbytes, small.nbytes

    assert asyncio.run(scenario()) == (8 * MIB, 2 * MIB)
