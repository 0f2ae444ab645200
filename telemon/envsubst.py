"""Environment variables in the configuration file, replaced as Telegraf replaces them.

Before the TOML is parsed, everywhere but in comments:

* ``${VAR}`` and ``$VAR`` become the variable's value;
* ``${VAR:-default}`` gives `default` when VAR is unset or empty,
  ``${VAR-default}`` only when it is unset (the default may hold ``${...}``);
* ``${VAR:?message}`` and ``${VAR?message}`` refuse the file when VAR is unset
  or empty (``:?``) or unset (``?``);
* ``$$`` is a literal ``$``.

A value is written so that TOML reads it back unchanged: inside a "..."
string its backslashes, quotes and control characters are escaped (a
password with a backslash stays that password); a value that a '...' string
cannot hold (a quote, a line break) is refused; outside strings (numbers,
booleans) it is written as it is.

Where Telegraf leaves an unset ``${VAR}`` in place (and the literal text
becomes, say, a token), telemon refuses the file instead: the line and the
variable are named, never the text around them (it may be a password). An
unset ``$VAR`` is kept, because ``$`` also appears in regular expressions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

__all__ = ["SubstitutionError", "substitute"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Where in the TOML text a reference stands decides how its value is written.
_BARE, _BASIC, _LITERAL, _MULTILINE_BASIC, _MULTILINE_LITERAL = range(5)
_OPENERS = (('"""', _MULTILINE_BASIC), ("'''", _MULTILINE_LITERAL), ('"', _BASIC), ("'", _LITERAL))
_CLOSERS = {_BASIC: '"', _LITERAL: "'", _MULTILINE_BASIC: '"""', _MULTILINE_LITERAL: "'''"}
_BASIC_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what a '...' string cannot hold (TAB can)
_NO_ECHO = "{} (a literal $ is written $$)"

Escape = Callable[[str, str], str]
"""(variable name, value) -> the text to put in the file."""


class SubstitutionError(ValueError):
    """A reference that cannot be replaced; the message names the line."""


def substitute(text: str, environ: Mapping[str, str]) -> str:
    """`text` with every reference outside comments replaced."""
    if "$" not in text:
        return text
    out: list[str] = []
    position, state, line = 0, _BARE, 1
    while position < len(text):
        char = text[position]
        if char == "$":
            try:
                value, position = _reference(text, position, environ, _ESCAPES[state])
            except SubstitutionError as exc:
                raise SubstitutionError(f"line {line}: {exc}") from None
            out.append(value)
            continue
        step, state = _advance(text, position, state)
        piece = text[position : position + step]
        line += piece.count("\n")
        out.append(piece)
        position += step
    return "".join(out)


def _advance(text: str, position: int, state: int) -> tuple[int, int]:
    """How many characters to copy from `position`, and the state after them."""
    char = text[position]
    if state == _BARE:
        if char == "#":  # a comment runs to the end of the line, references and all
            end = text.find("\n", position)
            return (len(text) if end < 0 else end) - position, _BARE
        for opener, string_state in _OPENERS:
            if text.startswith(opener, position):
                return len(opener), string_state
        return 1, _BARE
    if state in (_BASIC, _MULTILINE_BASIC) and char == "\\":
        # An escaped quote or backslash must not end the string; `\$` is left
        # for the reference (Telegraf replaces it too).
        return (2, state) if text[position + 1 : position + 2] in ('"', "\\") else (1, state)
    closer = _CLOSERS[state]
    if text.startswith(closer, position):
        return len(closer), _BARE
    if char == "\n" and state in (_BASIC, _LITERAL):
        return 1, _BARE  # not TOML; the parser will say so
    return 1, state


def _reference(
    text: str, dollar: int, environ: Mapping[str, str], escape: Escape
) -> tuple[str, int]:
    """The replacement of the reference at `dollar`, and where the text goes on."""
    following = text[dollar + 1 : dollar + 2]
    if following == "$":
        return "$", dollar + 2
    if following == "{":
        end = _closing_brace(text, dollar + 2)
        return _braced(text[dollar + 2 : end], environ, escape), end + 1
    if name := _NAME.match(text, dollar + 1):
        value = environ.get(name.group())
        shown = "$" + name.group() if value is None else escape(name.group(), value)
        return shown, name.end()
    return "$", dollar + 1  # a lone "$" (a regular expression's end, say)


def _closing_brace(text: str, start: int) -> int:
    """The index of the "}" closing a "${" whose content starts at `start` (same line)."""
    depth = 1
    for index in range(start, len(text)):
        char = text[index]
        if char == "\n":
            break
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    raise SubstitutionError(_NO_ECHO.format("an unclosed ${"))


def _braced(content: str, environ: Mapping[str, str], escape: Escape) -> str:
    """The text for one ``${...}`` (`content` is what the braces hold)."""
    name = _NAME.match(content)
    if name is None:
        raise SubstitutionError(_NO_ECHO.format("${ without a variable name"))
    variable, rest = name.group(), content[name.end() :]
    value = environ.get(variable)
    if not rest:
        if value is None:
            raise SubstitutionError(
                f"environment variable {variable} is not set "
                f"(write ${{{variable}:-}} to allow an empty value)"
            )
        return escape(variable, value)
    empty_counts_as_unset = rest.startswith(":")
    if empty_counts_as_unset:
        rest = rest[1:]
    operator, argument = rest[:1], rest[1:]
    if value is None or (empty_counts_as_unset and value == ""):
        if operator == "-":  # the default is file text: only its references are replaced
            return _expand(argument, environ, escape)
        if operator == "?":
            reason = _expand(argument, environ, _as_is) or "not set"
            raise SubstitutionError(f"environment variable {variable}: {reason}")
    elif operator in ("-", "?"):
        return escape(variable, value)
    raise SubstitutionError(f"expected }}, :-, -, :? or ? after ${{{variable}")


def _expand(text: str, environ: Mapping[str, str], escape: Escape) -> str:
    """`text` (a default) with its references replaced."""
    out: list[str] = []
    position = 0
    while (dollar := text.find("$", position)) >= 0:
        out.append(text[position:dollar])
        value, position = _reference(text, dollar, environ, escape)
        out.append(value)
    out.append(text[position:])
    return "".join(out)


def _as_is(variable: str, value: str) -> str:
    return value


def _in_basic_string(variable: str, value: str) -> str:
    return "".join(_BASIC_ESCAPES.get(c) or _unicode_escape(c) for c in value)


def _unicode_escape(char: str) -> str:
    return f"\\u{ord(char):04x}" if _CONTROL.match(char) else char


def _in_literal_string(variable: str, value: str) -> str:
    if "'" in value or _CONTROL.search(value):
        raise SubstitutionError(
            f"environment variable {variable} holds a quote or a control character, which a "
            f"'...' string cannot hold: write \"${{{variable}}}\""
        )
    return value


def _in_multiline_literal(variable: str, value: str) -> str:
    if "'''" in value or _CONTROL.search(value.replace("\n", "")):
        raise SubstitutionError(
            f"environment variable {variable} holds ''' or a control character, which a "
            f"'''...''' string cannot hold: write \"\"\"${{{variable}}}\"\"\""
        )
    return value


_ESCAPES: dict[int, Escape] = {
    _BARE: _as_is,
    _BASIC: _in_basic_string,
    _MULTILINE_BASIC: _in_basic_string,
    _LITERAL: _in_literal_string,
    _MULTILINE_LITERAL: _in_multiline_literal,
}
