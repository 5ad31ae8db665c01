"""The debounced merge: the pure fold (with a fake clock), properties, and the async shell."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncreload import Change, ChangeKind, Source
from asyncreload._watch.merge import (
    BURST_DEBOUNCE,
    ChangeBatch,
    ChangeStream,
    Pending,
    StreamStatistics,
    merge,
)

A, M, D = ChangeKind.ADDED, ChangeKind.MODIFIED, ChangeKind.DELETED
EV, ST = Source.EVENTS, Source.STAT


def fold(*kinds: ChangeKind, source: Source = EV) -> list[tuple[ChangeKind, str]]:
    p = Pending(debounce=0.05, max_wait=1.0)
    for i, kind in enumerate(kinds):
        p.add([Change(kind, "/p", source)], now=i * 0.001)
    return [(c.kind, c.path) for c in p.take()]


@pytest.mark.parametrize(
    ("sequence", "net"),
    [
        ((A,), [(A, "/p")]),
        ((A, M), [(A, "/p")]),
        ((A, D), []),  # appeared and went: nothing to report
        ((A, M, D), []),
        ((D, A), [(M, "/p")]),  # replaced (an editor's save by rename): modified
        ((M, D), [(D, "/p")]),
        ((M, M, M), [(M, "/p")]),
        ((D, A, D), [(D, "/p")]),
        ((A, D, A), [(A, "/p")]),
    ],
)
def test_net_kind(sequence: tuple[ChangeKind, ...], net: list[tuple[ChangeKind, str]]) -> None:
    assert fold(*sequence) == net


def test_a_path_seen_by_both_sources_is_reported_once_by_the_first() -> None:
    p = Pending(debounce=0.05, max_wait=1.0)
    p.add([Change(M, "/p", ST)], now=0)
    p.add([Change(M, "/p", EV), Change(A, "/q", EV)], now=0.01)
    assert p.take() == (Change(M, "/p", ST), Change(A, "/q", EV))


def test_due_after_quiet_or_after_max_wait() -> None:
    p = Pending(debounce=0.05, max_wait=0.2)
    assert p.due_at() is None
    p.add([Change(M, "/a", EV)], now=10.0)
    assert p.due_at() == pytest.approx(10.05)
    p.add([Change(M, "/b", EV)], now=10.04)
    assert p.due_at() == pytest.approx(10.09)  # quiet restarts with each change...
    for i in range(1, 40):
        p.add([Change(M, f"/c{i}", EV)], now=10.04 + i * 0.01)
    assert p.due_at() == pytest.approx(10.2)  # ...but churn can't hold the batch past max_wait
    p.take()
    assert p.due_at() is None


def test_a_burst_waits_for_longer_quiet_than_an_edit() -> None:
    p = Pending(debounce=0.02, max_wait=1.0)
    p.add([Change(M, "/a.py", EV)], now=0.0)
    assert p.due_at() == pytest.approx(0.02)  # one save: out quickly
    p.add([Change(A, f"/pkg/m{i}.py", EV) for i in range(20)], now=0.01)
    assert p.due_at() == pytest.approx(0.01 + BURST_DEBOUNCE)  # a checkout: one batch
    p.add([Change(A, f"/pkg/n{i}.py", EV) for i in range(5000)], now=0.9)
    assert p.due_at() == pytest.approx(1.0)  # but never past max_wait


paths = st.sampled_from([f"/r/{n}" for n in "abcdef"])
kinds = st.sampled_from(list(ChangeKind))
sources = st.sampled_from(list(Source))
events = st.lists(st.tuples(paths, kinds, sources), max_size=60)


@settings(max_examples=300, deadline=None)
@given(events=events, cut=st.integers(min_value=0, max_value=60))
def test_property_no_change_lost_and_one_entry_per_path(
    events: list[tuple[str, ChangeKind, Source]], cut: int
) -> None:
    """Folding in two batches (a consumer that was busy in between) never loses the net effect.

    Model: a path's existence is known from its last change; a batch reports a path iff its
    existence before the batch's first change differs from after the last, or it existed
    throughout and was touched.
    """
    p = Pending(debounce=0.05, max_wait=1.0)
    batches = []
    for i, (path, kind, source) in enumerate(events):
        if i == cut:
            batches.append(p.take())
        p.add([Change(kind, path, source)], now=i * 0.001)
    batches.append(p.take())
    halves = [events[:cut], events[cut:]] if cut < len(events) else [events]

    for batch, half in zip(batches, halves, strict=True):
        reported = [c.path for c in batch]
        assert len(reported) == len(set(reported))  # one entry per path
        assert reported == sorted(reported)
        for path in {e[0] for e in half}:
            mine = [k for (q, k, _) in half if q == path]
            existed = mine[0] is not A
            exists = mine[-1] is not D
            expected = (
                (M if exists else D) if existed else (A if exists else None)
            )  # fmt: skip
            got = [c.kind for c in batch if c.path == path]
            assert got == ([expected] if expected else [])
            first_source = next(s for (q, _, s) in half if q == path)
            assert all(c.source is first_source for c in batch if c.path == path)


@pytest.mark.anyio
async def test_slow_consumer_gets_everything_folded_and_the_queue_stays_bounded() -> None:
    stream = ChangeStream(debounce=0.01, max_wait=0.5)
    send, receive = anyio.create_memory_object_stream[list[Change]](4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(merge, receive, stream)
        async with send:
            # 10,000 changes to 100 paths while nobody reads: the sends never block for long
            # (the merge folds as they come) and what waits is one entry per path.
            with anyio.fail_after(20):
                for i in range(10_000):
                    await send.send([Change(M, f"/r/{i % 100}", EV)])
            assert len(stream._pending) <= 100
        batches: list[ChangeBatch] = []
        with anyio.fail_after(20):
            async for batch in stream:  # ends once the sources are closed and all is handed out
                batches.append(batch)
    # Every path is handed out. On a slow machine max_wait may pass while the last buffered
    # changes are still being folded, so a path can come again in a later batch: a change that
    # came later, not a lost or doubled one. Within a batch, each path is there once.
    assert {c.path for b in batches for c in b} == {f"/r/{i}" for i in range(100)}
    for b in batches:
        assert len({c.path for c in b}) == len(b)


@pytest.mark.anyio
async def test_the_stream_waits_for_quiet_before_handing_out() -> None:
    stream = ChangeStream(debounce=0.3, max_wait=5)
    send, receive = anyio.create_memory_object_stream[list[Change]](4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(merge, receive, stream)
        await send.send([Change(M, "/a", EV)])
        t0 = anyio.current_time()
        await send.send([Change(M, "/b", EV)])
        with anyio.fail_after(10):
            batch = await stream.__anext__()
        assert anyio.current_time() - t0 >= 0.3 - 0.01  # not before the quiet period
        assert [c.path for c in batch] == ["/a", "/b"]
        await send.aclose()


def test_take_nowait_hands_out_only_a_due_batch_and_statistics_say_what_waits() -> None:
    now = [100.0]
    stream = ChangeStream(debounce=0.5, max_wait=5, clock=lambda: now[0])
    assert stream.take_nowait() == ()
    assert stream.statistics() == StreamStatistics(pending=0, due_in=None, closed=False)
    stream._feed([Change(M, "/a", EV), Change(M, "/b", EV)])
    now[0] += 0.2
    assert stream.take_nowait() == ()  # not due: 0.3 s of quiet still to come
    stats = stream.statistics()
    assert (stats.pending, round(stats.due_in or 0, 6), stats.closed) == (2, 0.3, False)
    now[0] += 0.3
    assert [c.path for c in stream.take_nowait()] == ["/a", "/b"]
    assert stream.take_nowait() == ()
    stream._feed([Change(M, "/c", EV)])
    stream._close()  # the sources have stopped: what is left is handed out at once
    assert stream.statistics().closed
    assert [c.path for c in stream.take_nowait()] == ["/c"]
