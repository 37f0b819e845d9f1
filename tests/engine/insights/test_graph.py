"""Critical paths and schedule replays over job graphs."""

import pytest

from engine.errors import CycleError
from engine.insights._graph import Task, critical_path, longest_chain, replay, with_durations, without_edge


def _g(*tasks: Task) -> dict[str, Task]:
    return {t.name: t for t in tasks}


DIAMOND = _g(
    Task("build", 2.0),
    Task("unit", 3.0, ("build",)),
    Task("lint", 1.0, ("build",)),
    Task("package", 1.5, ("unit", "lint")),
)


def test_critical_path_of_a_diamond() -> None:
    length, path = critical_path(DIAMOND)
    assert path == ["build", "unit", "package"]
    assert length == pytest.approx(6.5)


def test_replay_unlimited_workers_equals_critical_path() -> None:
    s = replay(DIAMOND)
    assert s.makespan == pytest.approx(6.5)
    assert s.start["unit"] == s.start["lint"] == pytest.approx(2.0)
    assert s.start["package"] == pytest.approx(5.0)


def test_replay_with_one_worker_serialises() -> None:
    s = replay(DIAMOND, workers=1)
    assert s.makespan == pytest.approx(7.5)
    # lint and unit became ready together; the caller's order decides, unit first
    assert s.start["unit"] == pytest.approx(2.0) and s.start["lint"] == pytest.approx(5.0)


def test_removing_an_edge_lets_a_job_start_at_zero() -> None:
    g = _g(Task("slow", 3.0), Task("after", 2.0, ("slow",)), Task("other", 1.0))
    assert replay(g).makespan == pytest.approx(5.0)
    freed = without_edge(g, "after", "slow")
    assert replay(freed).start["after"] == 0.0
    assert replay(freed).makespan == pytest.approx(3.0)


def test_removing_an_edge_is_limited_by_workers() -> None:
    g = _g(Task("a", 2.0), Task("b", 2.0, ("a",)), Task("c", 2.0))
    assert replay(without_edge(g, "b", "a"), workers=2).makespan == pytest.approx(4.0)
    assert replay(without_edge(g, "b", "a"), workers=3).makespan == pytest.approx(2.0)


def test_with_durations_changes_only_named_jobs() -> None:
    g = with_durations(DIAMOND, {"unit": 0.5})
    assert g["unit"].duration == 0.5 and g["build"].duration == 2.0
    assert critical_path(g)[1] == ["build", "lint", "package"]
    assert replay(g).makespan == pytest.approx(2.0 + 1.0 + 1.5)


def test_missing_dependencies_count_as_done() -> None:
    g = _g(Task("deploy", 1.0, ("skipped-job",)))
    assert replay(g).makespan == 1.0
    assert critical_path(g) == (1.0, ["deploy"])


def test_cycles_are_named() -> None:
    g = _g(Task("a", 1.0, ("c",)), Task("b", 1.0, ("a",)), Task("c", 1.0, ("b",)))
    with pytest.raises(CycleError) as info:
        replay(g)
    assert set(info.value.cycle) == {"a", "b", "c"}
    with pytest.raises(CycleError):
        critical_path(g)


def test_longest_chain_counts_jobs() -> None:
    g = _g(
        Task("a", 1.0),
        Task("b", 1.0, ("a",)),
        Task("c", 1.0, ("b",)),
        Task("d", 1.0, ("c",)),
        Task("big", 10.0),
    )
    assert longest_chain(g) == ["a", "b", "c", "d"]
    assert critical_path(g)[1] == ["big"]


def test_empty_graph() -> None:
    assert replay({}).makespan == 0.0
    assert critical_path({}) == (0.0, [])
    assert longest_chain({}) == []


def test_bad_workers_and_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="workers"):
        replay(DIAMOND, workers=0)
    with pytest.raises(ValueError, match="duration"):
        replay(_g(Task("x", -1.0)))
