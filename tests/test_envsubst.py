"""Environment variables in the config file: Telegraf's forms, and clear refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemon.config import ConfigError, load_config
from telemon.envsubst import SubstitutionError, substitute

ENV = {"VAR": "foobar", "FALLBACK": "default", "EMPTY": "", "PORT": "9100"}

# (text, expected): Telegraf's own table for its default mode, except where
# telemon refuses an unset ${VAR} (below).
CASES = [
    ("my-da$tabase", "my-da$tabase"),
    ("my-da$$tabase", "my-da$tabase"),
    ("my-da$VARbase", "my-da$VARbase"),
    ("my-da$VAR", "my-dafoobar"),
    ("my-da${VAR}base", "my-dafoobarbase"),
    ("my-da$$VAR", "my-da$VAR"),
    ("my-da$${VAR}", "my-da${VAR}"),
    ("my-da\\${VAR}base", "my-da\\foobarbase"),
    ("my-da${ta:-omg}base", "my-daomgbase"),
    ("my-da${ta:-${FALLBACK}}base", "my-dadefaultbase"),
    ("${EMPTY:-used}", "used"),
    ("${EMPTY-unused}", ""),
    ("${UNSET-used}", "used"),
    ("${VAR:-unused}", "foobar"),
    ("${VAR:?needed}", "foobar"),
    ("${EMPTY?may be empty}", ""),
    ("${UNSET:-}", ""),
    ('pattern = "^pharo$"', 'pattern = "^pharo$"'),
    ("price = $5", "price = $5"),
    ("a $ b", "a $ b"),
    ("$", "$"),
    ("no references at all", "no references at all"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            'token = "${TOKEN}"',
            "line 1: environment variable TOKEN is not set"
            " (write ${TOKEN:-} to allow an empty value)",
            id="unset",
        ),
        pytest.param(
            "x = 1\nurl = '${HOST:?set HOST to the Pharo host}'",
            "line 2: environment variable HOST: set HOST to the Pharo host",
            id="required-with-message",
        ),
        pytest.param(
            "${EMPTY:?}", "line 1: environment variable EMPTY: not set", id="required-empty"
        ),
        pytest.param(
            "password = 'pa${1secret}'",
            "line 1: ${ without a variable name (a literal $ is written $$)",
            id="not-a-name",
        ),
        pytest.param(
            "${VAR+secret}", "line 1: expected }, :-, -, :? or ? after ${VAR", id="operator"
        ),
        pytest.param(
            "password = 'pa${ssword'",
            "line 1: an unclosed ${ (a literal $ is written $$)",
            id="unclosed",
        ),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(SubstitutionError) as caught:
        substitute(text, ENV)
    assert str(caught.value) == message
    assert "secret" not in message and "ssword" not in message  # the line may be a password


def test_comment_lines_are_left_alone() -> None:
    text = '# token = "${NOT_SET}"\n  ## ${ALSO_NOT_SET}\nport = ${PORT}\n'
    assert substitute(text, ENV) == '# token = "${NOT_SET}"\n  ## ${ALSO_NOT_SET}\nport = 9100\n'


def test_config_file_takes_values_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMON_TOKEN", "s3cret")
    monkeypatch.setenv("TELEMON_PORT", "9273")
    monkeypatch.setenv("SITE", "eu-1")
    path = tmp_path / "telemon.toml"
    path.write_text(
        "# the token comes from the container's environment\n"
        '[global_tags]\n  site = "${SITE}"\n  rack = "${RACK:-r1}"\n'
        '[http]\n  listen = "0.0.0.0:${TELEMON_PORT}"\n  token = "${TELEMON_TOKEN}"\n'
        "[agent]\n  uint_support = ${UINT:-true}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert dict(config.global_tags) == {"site": "eu-1", "rack": "r1"}
    assert config.http.listen == ("0.0.0.0", 9273)
    assert config.http.bearer_token == "s3cret"
    assert config.agent.uint_support is True


def test_config_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "telemon.toml"
    path.write_text('[http]\ntoken = "${TELEMON_TEST_UNSET_TOKEN}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.lines() == [
        f"{path}: (file): line 2: environment variable TELEMON_TEST_UNSET_TOKEN is not set"
        " (write ${TELEMON_TEST_UNSET_TOKEN:-} to allow an empty value)"
    ]


@given(st.text().map(lambda text: text.replace("#", "")))
def test_doubled_dollars_give_back_any_text(text: str) -> None:
    """`$$` is the escape: any text written with it reads back as itself (no comments)."""
    assert substitute(text.replace("$", "$$"), {}) == text


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_references_is_unchanged(text: str) -> None:
    assert substitute(text, ENV) == text


@given(st.text())
def test_any_value_reads_back_unchanged_from_a_basic_string(value: str) -> None:
    """A password with backslashes, quotes or control characters stays that password."""
    for document in ('key = "${V}"\n', 'key = """${V}"""\n', 'key = "a\\"${V}"\n'):
        prefix = 'a"' if "a\\" in document else ""
        assert tomllib.loads(substitute(document, {"V": value}))["key"] == prefix + value


@given(st.text())
def test_a_literal_string_takes_the_value_or_refuses_it_by_name(value: str) -> None:
    try:
        document = substitute("key = '${V}'\n", {"V": value})
    except SubstitutionError as exc:
        assert str(exc).startswith("line 1: environment variable V holds a quote")
        assert value not in str(exc) or not value
    else:
        assert tomllib.loads(document)["key"] == value


SECRET = 'C:\\new\\"it\'s"\t'  # backslashes, quotes, an apostrophe, a TAB


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param('k = "${SECRET}"', SECRET, id="basic-string-escaped"),
        pytest.param("k = '${SECRET}'", None, id="literal-string-refused"),
        pytest.param("k = ${PORT}", 9100, id="bare-number"),
        pytest.param('k = "x" # ${UNSET} in a trailing comment', "x", id="trailing-comment"),
        pytest.param('k = "#${PORT}"', "#9100", id="hash-in-a-string-is-no-comment"),
        # The default is the file's own text: TOML reads its escapes as it would anyway.
        pytest.param('k = "${UNSET:-a\\"b}"', 'a"b', id="default-is-file-text"),
    ],
)
def test_values_are_written_for_where_they_stand(document: str, expected: object) -> None:
    environ = {**ENV, "SECRET": SECRET}
    if expected is None:
        with pytest.raises(SubstitutionError, match="SECRET holds a quote"):
            substitute(document, environ)
    else:
        assert tomllib.loads(substitute(document, environ))["k"] == expected
