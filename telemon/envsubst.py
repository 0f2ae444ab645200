"""Environment variables in the configuration file, replaced as Telegraf replaces them.

Before the TOML is parsed, on every line that is not a comment:

* ``${VAR}`` and ``$VAR`` become the variable's value;
* ``${VAR:-default}`` gives `default` when VAR is unset or empty,
  ``${VAR-default}`` only when it is unset (the default may hold ``${...}``);
* ``${VAR:?message}`` and ``${VAR?message}`` refuse the file when VAR is unset
  or empty (``:?``) or unset (``?``);
* ``$$`` is a literal ``$``.

Where Telegraf leaves an unset ``${VAR}`` in place (and the literal text
becomes, say, a token), telemon refuses the file instead: the line and the
variable are named. An unset ``$VAR`` is kept, because ``$`` also appears in
regular expressions and passwords.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["SubstitutionError", "substitute"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(r"\s*#")
# The line may hold a password: name the mistake, never echo the text.
_NO_ECHO = "{} (a literal $ is written $$)"


class SubstitutionError(ValueError):
    """A reference that cannot be replaced; the message names the line."""


def substitute(text: str, environ: Mapping[str, str]) -> str:
    """`text` with the references of every non-comment line replaced."""
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if "$" in line and not _COMMENT.match(line):
            try:
                lines[number - 1] = _expand(line, environ)
            except SubstitutionError as exc:
                raise SubstitutionError(f"line {number}: {exc}") from None
    return "".join(lines)


def _expand(text: str, environ: Mapping[str, str]) -> str:
    out: list[str] = []
    position = 0
    while (dollar := text.find("$", position)) >= 0:
        out.append(text[position:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            position = dollar + 2
        elif following == "{":
            end = _closing_brace(text, dollar + 2)
            out.append(_braced(text[dollar + 2 : end], environ))
            position = end + 1
        elif name := _NAME.match(text, dollar + 1):
            out.append(environ.get(name.group(), "$" + name.group()))
            position = name.end()
        else:  # a lone "$" (a regular expression's end, say)
            out.append("$")
            position = dollar + 1
    out.append(text[position:])
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """The index of the "}" closing a "${" whose content starts at `start`."""
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise SubstitutionError(_NO_ECHO.format("an unclosed ${"))


def _braced(content: str, environ: Mapping[str, str]) -> str:
    """The value of one ``${...}`` (`content` is what the braces hold)."""
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
        return value
    empty_counts_as_unset = rest.startswith(":")
    if empty_counts_as_unset:
        rest = rest[1:]
    operator, argument = rest[:1], rest[1:]
    if value is None or (empty_counts_as_unset and value == ""):
        if operator == "-":
            return _expand(argument, environ)
        if operator == "?":
            reason = _expand(argument, environ) or "not set"
            raise SubstitutionError(f"environment variable {variable}: {reason}")
    elif operator in ("-", "?"):
        return value
    raise SubstitutionError(f"expected }}, :-, -, :? or ? after ${{{variable}")
