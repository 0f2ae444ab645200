"""The arithmetic of `docker stats` on recorded cgroup v1 (this engine), v2 and Podman stats."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import load_docker_sample
from hypothesis import given, settings
from hypothesis import strategies as st

from telemon.inputs import docker_stats as ds


def sample(name: str) -> ds.CpuSample:
    result = ds.CpuSample.from_stats(load_docker_sample(name))
    assert result is not None
    return result


# --- CPU ------------------------------------------------------------------------------


def test_cpu_percent_v1_matches_the_docker_cli_formula() -> None:
    first, second = load_docker_sample("v1-burn-1.json"), load_docker_sample("v1-burn-2.json")
    used = (
        second["cpu_stats"]["cpu_usage"]["total_usage"]
        - first["cpu_stats"]["cpu_usage"]["total_usage"]
    )
    host = second["cpu_stats"]["system_cpu_usage"] - first["cpu_stats"]["system_cpu_usage"]
    expected = used / host * second["cpu_stats"]["online_cpus"] * 100
    percent = ds.cpu_percent(sample("v1-burn-2.json"), sample("v1-burn-1.json"))
    assert percent == pytest.approx(expected)
    assert 90 < percent < 110  # the recorded container ran `yes` on one core


def test_cpu_percent_v2_counts_all_online_cpus() -> None:
    # 10 s of container CPU over 40 s of host CPU time on 4 CPUs: one full core.
    percent = ds.cpu_percent(sample("v2-limited-2.json"), sample("v2-limited.json"))
    assert percent == pytest.approx(100.0)


def test_podman_cpu_percent_uses_elapsed_read_time() -> None:
    # 2.5 s of CPU in 5 s of wall time; Podman's host counter would say 500%.
    previous, current = sample("podman-1.json"), sample("podman-2.json")
    assert ds.cpu_percent(current, previous, wall_clock=True) == pytest.approx(50.0)
    assert ds.cpu_percent(current, previous) == pytest.approx(1000.0)


def test_cpu_sample_falls_back_to_percpu_length_without_online_cpus() -> None:
    stats = load_docker_sample("v1-burn-1.json")
    del stats["cpu_stats"]["online_cpus"]
    result = ds.CpuSample.from_stats(stats)
    assert result is not None
    assert result.online_cpus == len(stats["cpu_stats"]["cpu_usage"]["percpu_usage"])


@pytest.mark.parametrize(
    ("current", "previous"),
    [
        (ds.CpuSample(10, 1000, 2, None), ds.CpuSample(20, 900, 2, None)),  # restarted container
        (ds.CpuSample(30, 1000, 2, None), ds.CpuSample(20, 1000, 2, None)),  # host did not move
        (ds.CpuSample(30, None, 2, None), ds.CpuSample(20, 900, 2, None)),  # no host counter
    ],
)
def test_cpu_percent_is_unknown_rather_than_wrong(
    current: ds.CpuSample, previous: ds.CpuSample
) -> None:
    assert ds.cpu_percent(current, previous) is None


def test_cpu_percent_of_an_idle_container_is_zero() -> None:
    assert ds.cpu_percent(ds.CpuSample(20, 2000, 2, None), ds.CpuSample(20, 1000, 2, None)) == 0.0


def test_tracker_needs_two_samples_and_drops_a_restart() -> None:
    tracker = ds.CpuTracker()
    assert tracker.percent("a", ds.CpuSample(100, 1000, 1, None)) is None
    assert tracker.percent("a", ds.CpuSample(600, 2000, 1, None)) == pytest.approx(50.0)
    assert tracker.percent("a", ds.CpuSample(50, 3000, 1, None)) is None  # counter went back
    assert tracker.percent("a", ds.CpuSample(150, 4000, 1, None)) == pytest.approx(10.0)


def test_tracker_forgets_containers_that_are_gone() -> None:
    tracker = ds.CpuTracker()
    for name in "abc":
        tracker.percent(name, ds.CpuSample(1, 1, 1, None))
    tracker.keep_only({"b"})
    assert len(tracker) == 1
    assert tracker.percent("a", ds.CpuSample(2, 2, 1, None)) is None


def test_cpu_fields_are_telegrafs() -> None:
    stats = load_docker_sample("v2-limited.json")
    fields = ds.cpu_fields(stats, "id1", 12.5)
    assert fields == {
        "usage_total": 7500000000,
        "usage_in_usermode": 6000000000,
        "usage_in_kernelmode": 1500000000,
        "usage_system": 400000000000,
        "throttling_periods": 120,
        "throttling_throttled_periods": 30,
        "throttling_throttled_time": 2500000000,
        "usage_percent": 12.5,
        "container_id": "id1",
    }
    assert "usage_percent" not in ds.cpu_fields(stats, "id1", None)


def test_percpu_points_exist_on_v1_only() -> None:
    v1 = load_docker_sample("v1-burn-1.json")
    points = ds.percpu_points(v1, "id")
    assert [cpu for cpu, _ in points] == ["cpu0", "cpu1"]
    assert (
        sum(int(f["usage_total"]) for _, f in points) == v1["cpu_stats"]["cpu_usage"]["total_usage"]
    )
    assert ds.percpu_points(load_docker_sample("v2-limited.json"), "id") == []


# --- memory ---------------------------------------------------------------------------


def test_working_set_v1_subtracts_total_inactive_file() -> None:
    memory = load_docker_sample("v1-memhold.json")["memory_stats"]
    expected = memory["usage"] - memory["stats"]["total_inactive_file"]
    assert ds.working_set(memory) == expected
    # The container holds 48 MiB in a tmpfs: shared memory counts, as in `docker stats`.
    assert ds.working_set(memory) >= 48 * 1024 * 1024


def test_working_set_v2_subtracts_inactive_file() -> None:
    memory = load_docker_sample("v2-limited.json")["memory_stats"]
    assert ds.working_set(memory) == 314572800 - 83886080


def test_working_set_ignores_an_inactive_figure_larger_than_usage() -> None:
    assert ds.working_set({"usage": 100, "stats": {"inactive_file": 500}}) == 100
    assert ds.working_set({"usage": 100, "stats": None}) == 100
    assert ds.working_set({"stats": {"inactive_file": 5}}) is None


def test_mem_fields_v2_keep_raw_values_beside_the_working_set() -> None:
    fields = ds.mem_fields(load_docker_sample("v2-limited.json")["memory_stats"], "id2")
    assert fields["usage"] == 314572800
    assert fields["limit"] == 536870912
    assert fields["working_set"] == 230686720
    assert fields["usage_percent"] == pytest.approx(230686720 / 536870912 * 100)
    assert fields["anon"] == 209715200 and fields["file"] == 104857600
    assert fields["inactive_file"] == 83886080
    assert "cache" not in fields and "max_usage" not in fields and "fail_count" not in fields
    assert fields["container_id"] == "id2"
    assert all(
        type(v) is int for k, v in fields.items() if k not in ("usage_percent", "container_id")
    )


def test_mem_fields_v1_have_telegrafs_names() -> None:
    memory = load_docker_sample("v1-memhold.json")["memory_stats"]
    fields = ds.mem_fields(memory, "id1")
    for key in ("cache", "rss", "total_rss", "total_inactive_file", "pgfault", "max_usage"):
        assert fields[key] == memory["stats"].get(key, memory.get(key))


def test_mem_fields_podman_usage_is_already_the_working_set() -> None:
    fields = ds.mem_fields(load_docker_sample("podman-1.json")["memory_stats"], "p")
    assert fields["working_set"] == fields["usage"] == 73400320


def test_mem_fields_of_a_stopped_container_are_empty() -> None:
    assert ds.mem_fields({}, "id") == {}


def test_fail_count_is_written_only_when_nonzero() -> None:
    assert "fail_count" not in ds.mem_fields({"usage": 1, "failcnt": 0}, "id")
    assert ds.mem_fields({"usage": 1, "failcnt": 3}, "id")["fail_count"] == 3


# --- network and block I/O --------------------------------------------------------------


def test_net_points_per_interface_and_total() -> None:
    points = dict(
        ds.net_points(load_docker_sample("v2-limited.json"), "id", per_interface=True, total=True)
    )
    assert list(points) == ["eth0", "eth1", "total"]
    assert points["total"]["rx_bytes"] == 5100 and points["total"]["tx_dropped"] == 2
    only_total = ds.net_points(
        load_docker_sample("v2-limited.json"), "id", per_interface=False, total=True
    )
    assert [name for name, _ in only_total] == ["total"]


def test_no_net_points_without_networks() -> None:
    assert ds.net_points({"networks": {}}, "id", per_interface=True, total=True) == []
    assert ds.net_points({}, "id", per_interface=True, total=True) == []


def test_blkio_total_sums_devices_and_skips_unknown_ops() -> None:
    points = dict(
        ds.blkio_points(load_docker_sample("v2-limited.json"), "id", per_device=True, total=True)
    )
    assert points["total"]["io_service_bytes_recursive_read"] == 4097000
    assert points["total"]["io_service_bytes_recursive_write"] == 1048600
    assert points["8:0"]["io_service_bytes_recursive_read"] == 4096000
    podman = dict(
        ds.blkio_points(load_docker_sample("podman-1.json"), "id", per_device=True, total=True)
    )
    assert "io_service_bytes_recursive_rios" not in podman["253:0"]


def test_blkio_total_is_zero_without_io() -> None:
    points = ds.blkio_points(
        load_docker_sample("v1-burn-1.json"), "id", per_device=False, total=True
    )
    assert points == [
        (
            "total",
            {
                "io_service_bytes_recursive_read": 0,
                "io_service_bytes_recursive_write": 0,
                "container_id": "id",
            },
        )
    ]


def test_blkio_v1_field_names() -> None:
    stats = {
        "blkio_stats": {
            "io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "Read", "value": 10}],
            "io_wait_time_recursive": [{"major": 8, "minor": 0, "op": "Write", "value": 3}],
            "io_time_recursive": [{"major": 8, "minor": 0, "op": "", "value": 7}],
            "sectors_recursive": [{"major": 8, "minor": 0, "op": "", "value": 2}],
        }
    }
    [(device, fields)] = ds.blkio_points(stats, "id", per_device=True, total=False)
    assert device == "8:0"
    assert fields == {
        "io_service_bytes_recursive_read": 10,
        "io_wait_time_write": 3,
        "io_time_recursive": 7,
        "sectors_recursive": 2,
        "container_id": "id",
    }


# --- status, names, engine -------------------------------------------------------------


def test_status_fields_of_a_running_container() -> None:
    inspect = load_docker_sample("v1-memhold-inspect.json")
    started = ds.parse_timestamp_ns(inspect["State"]["StartedAt"])
    assert started is not None
    fields = ds.status_fields(inspect, "id", started + 5_000_000_000)
    assert fields == {
        "container_id": "id",
        "oomkilled": False,
        "pid": inspect["State"]["Pid"],
        "exitcode": 0,
        "restart_count": 0,
        "started_at": started,
        "uptime_ns": 5_000_000_000,
    }


def test_status_fields_of_a_stopped_container_count_the_time_it_ran() -> None:
    inspect = {
        "State": {
            "Running": False,
            "OOMKilled": True,
            "ExitCode": 137,
            "StartedAt": "2026-01-01T00:00:00Z",
            "FinishedAt": "2026-01-01T00:01:00.5Z",
        },
        "RestartCount": 2,
    }
    fields = ds.status_fields(inspect, "id", 10**19)
    assert fields["uptime_ns"] == 60_500_000_000
    assert fields["oomkilled"] is True and fields["exitcode"] == 137
    assert fields["finished_at"] == fields["started_at"] + 60_500_000_000


def test_status_fields_of_a_restarting_container_count_the_time_it_ran() -> None:
    """Restarting counts as Running, but the container has finished: no uptime growth."""
    inspect = {
        "State": {
            "Running": True,
            "Restarting": True,
            "StartedAt": "2026-01-01T00:00:00Z",
            "FinishedAt": "2026-01-01T00:00:00.392Z",
        },
    }
    fields = ds.status_fields(inspect, "id", 10**19)
    assert fields["uptime_ns"] == 392_000_000


def test_stats_read_at_go_zero_time_are_empty() -> None:
    """The engine's answer for a container that is not running: zeros, not a measurement."""
    assert ds.is_empty_stats({"read": "0001-01-01T00:00:00Z", "cpu_stats": {}})
    assert not ds.is_empty_stats(load_docker_sample("v1-burn-1.json"))
    assert not ds.is_empty_stats({})  # Podman-like documents without `read` are measured


def test_health_fields() -> None:
    assert ds.health_fields({"State": {}}) == {}
    health = {"State": {"Health": {"Status": "unhealthy", "FailingStreak": 3}}}
    assert ds.health_fields(health) == {"health_status": "unhealthy", "failing_streak": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T21:52:44.674429066Z", 1795902764674429066),
        ("2026-11-28T21:52:44Z", 1795902764000000000),
        ("2026-11-28T22:52:44.5+01:00", 1795902764500000000),
        ("0001-01-01T00:00:00Z", None),
        ("2024-13-01T00:00:00Z", None),  # a lying engine: no month 13
        ("2024-02-30T25:61:00Z", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_timestamp_ns(text: Any, expected: int | None) -> None:
    assert ds.parse_timestamp_ns(text) == expected


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("local/busybox", ("local/busybox", "unknown")),
        ("pharo:11", ("pharo", "11")),
        ("registry:5000/team/pharo:11.0.1", ("registry:5000/team/pharo", "11.0.1")),
        ("registry:5000/team/pharo", ("registry:5000/team/pharo", "unknown")),
        ("pharo@sha256:abcd", ("pharo", "unknown")),
    ],
)
def test_parse_image(image: str, expected: tuple[str, str]) -> None:
    assert ds.parse_image(image) == expected


def test_container_name_skips_link_aliases() -> None:
    assert ds.container_name(["/web/db", "/db"]) == "db"
    assert ds.container_name(["/only"]) == "only"
    assert ds.container_name(None) == ""


def test_engine_fields() -> None:
    info = {"NCPU": 2, "Containers": 5, "ContainersRunning": 3, "ContainersStopped": 2,
            "ContainersPaused": 0, "Images": 7, "MemTotal": 1024, "Name": "host"}  # fmt: skip
    assert ds.engine_fields(info) == {
        "n_cpus": 2,
        "n_containers": 5,
        "n_containers_running": 3,
        "n_containers_stopped": 2,
        "n_containers_paused": 0,
        "n_images": 7,
        "memory_total": 1024,
    }


def test_lying_documents_give_no_fields_rather_than_errors() -> None:
    junk: dict[str, Any] = {
        "cpu_stats": {"cpu_usage": {"total_usage": "lots"}},
        "memory_stats": {"usage": True, "stats": {"cache": "x"}},
        "networks": {"eth0": "down"},
        "blkio_stats": {"io_service_bytes_recursive": [{"major": "8"}, 5]},
    }
    assert ds.CpuSample.from_stats(junk) is None
    assert ds.cpu_fields(junk, "id", None) == {}
    assert ds.mem_fields(junk["memory_stats"], "id") == {}
    assert ds.net_points(junk, "id", per_interface=True, total=False) == []
    total = ds.blkio_points(junk, "id", per_device=False, total=True)
    assert total[0][1]["io_service_bytes_recursive_read"] == 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=25,
)
STATS_KEYS = ("cpu_stats", "memory_stats", "networks", "blkio_stats", "read", "State", "Health")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(STATS_KEYS), JSON, max_size=7), JSON)
def test_any_json_gives_fields_or_nothing_never_an_exception(
    doc: dict[str, Any], junk: Any
) -> None:
    """An engine that lies (wrong types anywhere) costs values, not the collection."""
    for stats in (
        doc,
        {**doc, "cpu_stats": {"cpu_usage": junk}},
        {"memory_stats": {"stats": junk}},
    ):
        ds.CpuSample.from_stats(stats)
        ds.cpu_fields(stats, "id", None)
        ds.percpu_points(stats, "id")
        ds.net_points(stats, "id", per_interface=True, total=True)
        ds.blkio_points(stats, "id", per_device=True, total=True)
        ds.mem_fields(ds.as_object(stats.get("memory_stats")), "id")
        ds.working_set(ds.as_object(stats.get("memory_stats")))
        ds.status_fields(stats, "id", 0)
        ds.health_fields(stats)
        ds.engine_fields(stats)
        ds.container_name(junk)
        ds.parse_timestamp_ns(junk)
