"""The jobs parse gate without HTTP: interactive requests first, woken by a condition, not a poll."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from service.jobs import InteractiveTraffic
from service.jobs._priority import JobParseGate


async def _enter_and_hold(gate: JobParseGate, entered: list[str], name: str, release: asyncio.Event) -> None:
    async with gate:
        entered.append(name)
        await release.wait()


def test_a_job_advances_one_file_at_a_time_under_traffic_and_resumes_when_it_ends() -> None:
    async def scenario() -> None:
        traffic = InteractiveTraffic()
        gate = JobParseGate(3, traffic)
        entered: list[str] = []
        release = {n: asyncio.Event() for n in "abc"}
        traffic.started()  # a /v1/predict request is being answered
        tasks = {n: asyncio.create_task(_enter_and_hold(gate, entered, n, release[n])) for n in "abc"}
        await asyncio.sleep(0.05)
        assert entered == ["a"] and gate.parsing == 1  # one job file beyond the request, no more

        release["a"].set()  # the file in the pool is done: the next one may go in, still one at a time
        await asyncio.wait_for(_until(lambda: len(entered) == 2), timeout=5)
        assert gate.parsing == 1

        traffic.in_flight -= 1  # a change nobody announces: a poll would notice it, a condition waiter sleeps on
        await asyncio.sleep(0.05)
        assert len(entered) == 2
        traffic.in_flight += 1
        await traffic.finished()  # the request is answered: the waiting file is woken at once
        await asyncio.wait_for(_until(lambda: len(entered) == 3), timeout=5)
        assert gate.parsing == 2
        for event in release.values():
            event.set()
        await asyncio.gather(*tasks.values())
        assert gate.parsing == 0 and traffic.in_flight == 0

    asyncio.run(scenario())


def test_a_waiting_file_that_is_cancelled_gives_its_slot_back() -> None:
    async def scenario() -> None:
        traffic = InteractiveTraffic()
        gate = JobParseGate(2, traffic)
        entered: list[str] = []
        hold = asyncio.Event()
        traffic.started()
        first = asyncio.create_task(_enter_and_hold(gate, entered, "first", hold))
        waiting = asyncio.create_task(_enter_and_hold(gate, entered, "waiting", hold))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await traffic.finished()
        late = asyncio.create_task(_enter_and_hold(gate, entered, "late", hold))
        await asyncio.wait_for(_until(lambda: "late" in entered), timeout=5)  # the cancelled slot is free
        hold.set()
        await asyncio.gather(first, late)
        assert entered == ["first", "late"] and gate.parsing == 0

    asyncio.run(scenario())


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0)
