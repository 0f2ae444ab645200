"""The Prometheus text in steps, from prepared samples: the same bytes as in one go."""

from __future__ import annotations

from collections.abc import Generator

from hypothesis import given, settings
from hypothesis import strategies as st

from telemon.metric import FieldValue, Metric
from telemon.prometheus import SampleCache, render_prometheus, render_steps

# Few characters, so that names and label sets collide after sanitizing
# (`a.b` and `a_b`), series repeat and escapes are met.
NAMES = st.text(alphabet="ab._-1:é", max_size=4)
TEXTS = st.text(alphabet='ab"\\\n\ud800 ', max_size=3)
VALUES: st.SearchStrategy[FieldValue] = (
    st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | TEXTS
)
METRICS = st.builds(
    Metric,
    NAMES,
    st.dictionaries(NAMES, TEXTS, max_size=3),
    st.dictionaries(NAMES, VALUES, max_size=4),
    st.none() | st.integers(min_value=0, max_value=2**63),
)


def drain(steps: Generator[None, None, bytes]) -> tuple[bytes, int]:
    """The rendering's bytes and how many times it let others run."""
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value, pauses
        pauses += 1


@settings(max_examples=300)
@given(
    st.lists(METRICS, max_size=12),
    st.lists(st.integers(min_value=0, max_value=11), max_size=4),
    st.booleans(),
    st.booleans(),
    st.integers(min_value=1, max_value=6),
)
def test_steps_and_prepared_samples_give_the_one_shot_bytes(
    metrics: list[Metric], changed: list[int], timestamps: bool, strings: bool, step: int
) -> None:
    options = {"timestamps": timestamps, "string_as_label": strings}
    cache = SampleCache()
    expected = render_prometheus(metrics, **options)
    assert drain(render_steps(metrics, cache=cache, step=step, **options))[0] == expected
    # Again from the cache, then with some metrics replaced (a series that changed)
    # and one served twice.
    assert drain(render_steps(metrics, cache=cache, step=step, **options))[0] == expected
    again = list(metrics)
    for index in changed:
        if index < len(again):
            old = again[index]
            again[index] = Metric(old.measurement, dict(old.tags), {"x": index}, old.time_ns)
    again += again[:1]
    expected = render_prometheus(again, **options)
    assert drain(render_steps(again, cache=cache, step=step, **options))[0] == expected
    # Other options: nothing prepared for the first ones is used.
    other = {"timestamps": not timestamps, "string_as_label": not strings}
    expected = render_prometheus(again, **other)
    assert drain(render_steps(again, cache=cache, step=step, **other))[0] == expected


def many(count: int) -> list[Metric]:
    return [Metric("m", {"h": str(i)}, {"a": i, "b": 1.5}, i) for i in range(count)]


def test_the_rendering_lets_others_run_every_step_samples() -> None:
    steps = render_steps(many(1000), step=100)
    samples = 0
    while True:
        try:
            next(steps)
        except StopIteration:
            break
        samples += 1
    # 2000 samples and their joining: at least one pause per 100 of each.
    assert samples >= 2 * 2000 // 100 - 2


def test_metrics_served_again_are_not_prepared_again() -> None:
    metrics = many(10)
    cache = SampleCache()
    drain(render_steps(metrics, cache=cache))
    prepared = dict(cache.samples)
    fresh = Metric("m", {"h": "0"}, {"a": 7, "b": 1.5}, 0)
    body, _ = drain(render_steps([fresh, *metrics[1:]], cache=cache))
    assert body == render_prometheus([fresh, *metrics[1:]])
    for metric in metrics[1:]:
        assert cache.samples[id(metric)] is prepared[id(metric)]
    assert id(metrics[0]) not in cache.samples  # the replaced one is no longer held
    assert cache.samples[id(fresh)] != prepared[id(metrics[0])]


def test_a_metric_whose_fields_were_replaced_is_prepared_again() -> None:
    metric = Metric("m", {}, {"a": 1})
    cache = SampleCache()
    drain(render_steps([metric], cache=cache))
    metric.fields = {"a": 2}
    assert drain(render_steps([metric], cache=cache))[0] == render_prometheus([metric])


def test_an_abandoned_rendering_leaves_the_cache_as_it_was() -> None:
    cache = SampleCache()
    drain(render_steps(many(5), cache=cache))
    before = dict(cache.samples)
    steps = render_steps(many(500), cache=cache, step=10)
    next(steps)
    steps.close()
    assert cache.samples == before
