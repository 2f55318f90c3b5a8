"""Topic templates: which levels of a vendor's MQTT topic name the site, zone, device and quantity.

A template is a topic whose levels are literal text (must be equal), `+` (any text, ignored) or
one of `{site}`, `{zone}`, `{device}` (required) and `{quantity}` (the level's text is the
value). Levels follow MQTT: the topic is split on every `/`, so `/sys/x` has an empty level 0,
and `/foo`, `foo` and `foo/` are three different topics that no template matches alike.

    TopicTemplate.parse("/sys/+/{site}/{device}/thing/event/property/post")
    TopicTemplate.parse("{site}/{device}/sensor/{quantity}/state")      # Home Assistant
"""

from __future__ import annotations

from dataclasses import dataclass

NAMES = ("site", "zone", "device", "quantity")


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    text: str
    size: int  # number of levels
    literals: tuple[tuple[int, str], ...]  # (level, text) that must be equal
    named: tuple[tuple[int, str], ...]  # (level, name) whose text is taken

    @classmethod
    def parse(cls, text: str) -> TopicTemplate:
        """The template `text`; ValueError saying which level is wrong."""
        if not text:
            raise ValueError("a template cannot be empty")
        literals: list[tuple[int, str]] = []
        named: list[tuple[int, str]] = []
        levels = text.split("/")
        for i, level in enumerate(levels):
            if level == "+":
                continue
            if level.startswith("{") and level.endswith("}") and level[1:-1] in NAMES:
                name = level[1:-1]
                if any(n == name for _, n in named):
                    raise ValueError(f"{{{name}}} appears twice in {text!r}")
                named.append((i, name))
            elif "#" in level:
                raise ValueError(f"level {i} {level!r}: no # in a template; name each level or ignore it with +")
            elif "+" in level or "{" in level or "}" in level:
                raise ValueError(f"level {i} {level!r} must be literal text, + or one of "
                                 + ", ".join("{" + n + "}" for n in NAMES))
            else:
                literals.append((i, level))
        if not any(n == "device" for _, n in named):
            raise ValueError(f"{text!r} has no {{device}} level")
        return cls(text, len(levels), tuple(literals), tuple(named))

    def has(self, name: str) -> bool:
        return any(n == name for _, n in self.named)

    def values(self, topic: str) -> dict[str, str]:
        """{name: level text} of `topic`; ValueError saying why the topic does not fit."""
        parts = topic.split("/")
        if len(parts) != self.size:
            raise ValueError(f"it has {len(parts)} levels, the template {self.size}")
        for i, lit in self.literals:
            if parts[i] != lit:
                raise ValueError(f"level {i} is {_show(parts[i])}, the template has {_show(lit)}")
        out = {}
        for i, name in self.named:
            if not parts[i]:
                raise ValueError(f"level {i} ({{{name}}}) is empty")
            out[name] = parts[i]
        return out

    def filter_problem(self, topic_filter: str) -> str | None:
        """Why the subscription's filter cannot deliver topics of this template (None: it can).

        Every literal level of the filter must be the template's level text or a named/+ level of
        the template; the level counts must agree unless the filter ends with #. The template may
        be narrower than the filter: a message that does not fit it is a dead letter.
        """
        literal = dict(self.literals)
        levels = topic_filter.split("/")
        for i, f in enumerate(levels):
            if f == "#":
                return None if self.size >= i else f"the template has {self.size} levels, the filter at least {i}"
            if i >= self.size:
                break
            if f != "+" and i in literal and literal[i] != f:
                return f"level {i} is {_show(literal[i])} in the template, {_show(f)} in the filter"
        if len(levels) != self.size:
            return f"the template has {self.size} levels, the filter {len(levels)}"
        return None


def _show(level: str) -> str:
    return repr(level) if level else "'' (empty: a leading, trailing or double /)"
