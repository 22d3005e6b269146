"""The ROS-free frame scheduler: bounded keep-last queues, round-robin fairness, batches, staleness, stop."""

from __future__ import annotations

import threading
import time

import pytest

from ladon.scheduler import FrameScheduler


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_queue_drops_its_oldest_frame_and_counts_it() -> None:
    drops = []
    s = FrameScheduler(queue_size=2, on_drop=lambda k, item, why: drops.append((k, item, why)))
    for i in range(5):
        s.put("a", i)
    assert drops == [("a", 0, "dropped"), ("a", 1, "dropped"), ("a", 2, "dropped")]
    assert s.take(timeout=0) == [("a", 3)] and s.take(timeout=0) == [("a", 4)]
    c = s.counters("a")
    assert (c.queued, c.served, c.dropped, c.stale) == (5, 2, 3, 0)


def test_streams_are_served_round_robin_so_a_flood_cannot_starve_the_others() -> None:
    s = FrameScheduler(queue_size=1000)
    for i in range(100):
        s.put("flood", i)
        if i % 10 == 0:
            s.put("calm", i)
    served = [s.take(timeout=0)[0][0] for _ in range(20)]
    assert served.count("calm") == 10 and served.count("flood") == 10
    assert served[:4] in (["flood", "calm", "flood", "calm"], ["calm", "flood", "calm", "flood"])


def test_under_overload_equal_demand_gets_equal_service() -> None:
    s = FrameScheduler(queue_size=4, max_batch=3)
    served = dict.fromkeys("abcd", 0)
    for _ in range(200):  # every robot sends 2 frames per service round; the server takes 3 frames per round
        for k in "abcd":
            s.put(k, 0)
            s.put(k, 0)
        for key, _item in s.take(timeout=0):
            served[key] += 1
    assert max(served.values()) / min(served.values()) <= 1.2
    assert sum(served.values()) == 600


def test_batches_take_one_frame_per_stream_per_round() -> None:
    s = FrameScheduler(queue_size=10, max_batch=4)
    for i in range(3):
        s.put("a", f"a{i}")
    s.put("b", "b0")
    assert s.take(timeout=0) == [("a", "a0"), ("b", "b0"), ("a", "a1"), ("a", "a2")]


def test_a_batch_waits_up_to_max_wait_for_more_frames() -> None:
    s = FrameScheduler(queue_size=10, max_batch=3, max_wait_s=5.0)
    s.put("a", 0)
    threading.Timer(0.05, lambda: (s.put("b", 1), s.put("c", 2))).start()
    start = time.monotonic()
    batch = s.take(timeout=1)
    assert sorted(k for k, _ in batch) == ["a", "b", "c"] and time.monotonic() - start < 4.0
    s2 = FrameScheduler(queue_size=10, max_batch=3, max_wait_s=0.05)
    s2.put("a", 0)
    assert s2.take(timeout=1) == [("a", 0)]


def test_stale_frames_are_dropped_not_served() -> None:
    clock, drops = FakeClock(), []
    s = FrameScheduler(queue_size=5, max_age_s=0.5, clock=clock, on_drop=lambda k, item, why: drops.append(why))
    s.put("a", "old")
    clock.now += 1.0
    s.put("a", "new")
    s.put("b", "born-early", born_s=clock.now - 2.0)
    assert s.take(timeout=0) == [("a", "new")]
    assert s.take(timeout=0) == [] and drops == ["stale", "stale"]
    assert s.counters("a").stale == 1 and s.counters("b").stale == 1


def test_take_blocks_until_a_frame_and_stop_wakes_it() -> None:
    s = FrameScheduler()
    got = []
    worker = threading.Thread(target=lambda: got.append(s.take()))
    worker.start()
    time.sleep(0.05)
    s.put("a", 1)
    worker.join(2)
    assert got == [[("a", 1)]]
    worker = threading.Thread(target=lambda: got.append(s.take()))
    worker.start()
    time.sleep(0.05)
    s.stop()
    worker.join(2)
    assert not worker.is_alive() and got[-1] is None
    s.put("a", 2)  # ignored once stopped
    assert s.take(timeout=0) is None


def test_streams_can_join_and_leave() -> None:
    s = FrameScheduler(queue_size=3)
    s.add_stream("a")
    s.put("b", 1)
    s.put("a", 2)
    assert s.streams == ("a", "b")
    assert s.remove_stream("b") == [1] and s.remove_stream("missing") == []
    assert s.streams == ("a",) and s.take(timeout=0) == [("a", 2)] and s.pending() == 0


@pytest.mark.parametrize("kwargs", [{"queue_size": 0}, {"max_batch": 0}, {"max_wait_s": -1}, {"max_age_s": 0}])
def test_bad_settings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        FrameScheduler(**kwargs)


def test_concurrent_producers_lose_nothing_uncounted() -> None:
    s = FrameScheduler(queue_size=8, max_batch=4)
    stop = threading.Event()
    served = []

    def work() -> None:
        while (batch := s.take(timeout=0.05)) is not None:
            served.extend(batch)
            if stop.is_set() and s.pending() == 0:
                return

    workers = [threading.Thread(target=work) for _ in range(2)]
    producers = [threading.Thread(target=lambda k=k: [s.put(k, i) for i in range(2000)]) for k in "abc"]
    for t in workers + producers:
        t.start()
    for t in producers:
        t.join()
    stop.set()
    for t in workers:
        t.join(5)
    for k in "abc":
        c = s.counters(k)
        assert c.queued == 2000 and c.served + c.dropped == 2000
    assert len(served) == sum(s.counters(k).served for k in "abc")


def test_a_second_publisher_flooding_a_stream_gets_only_its_share_of_that_streams_turns() -> None:
    s = FrameScheduler(queue_size=2)
    served = {"genuine": 0, "forger": 0}
    for _ in range(50):  # per service turn: the forger sends 100 frames, the genuine publisher one
        s.put("robot", "genuine", source="gid-genuine")
        for _ in range(100):
            s.put("robot", "forger", source="gid-forger")
        for _ in range(2):
            (batch,) = [s.take(timeout=0)]
            served[batch[0][1]] += 1
    assert served["genuine"] == 50  # every genuine frame served: the flood only overflowed its own queue
    c = s.counters("robot")
    assert c.dropped >= 50 * 98 and c.served == 100


def test_sources_beyond_the_limit_share_one_overflow_queue() -> None:
    s = FrameScheduler(queue_size=1, max_sources=2)
    for i in range(10):
        s.put("robot", f"src{i}", source=i)
    assert s.pending("robot") == 3  # two tracked sources + one shared overflow queue
    assert s.counters("robot").dropped == 7
    assert sorted(item for _, item in (s.take(timeout=0)[0] for _ in range(3))) == ["src0", "src1", "src9"]
