"""The validated names and small value types of the configuration.

Each name type is a string with a check whose error says which characters are allowed.
`router.config_reference` shows these types by what they name ("queue", "skill", ...), not as
plain strings.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
LANG_RE = re.compile(r"^[a-z]{2,3}$")


def _name_check(what: str, pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{what} {value!r} is not valid: {rule}")
        return value

    return AfterValidator(check)


_LOWER_RULE = "lower-case letters, digits, '_' and '-', starting with a letter or digit, at most 48"
QueueName = Annotated[str, _name_check("queue name", _NAME_RE, _LOWER_RULE)]
SkillName = Annotated[str, _name_check("skill name", _NAME_RE, _LOWER_RULE)]
ReasonName = Annotated[str, _name_check("reason code", _NAME_RE, _LOWER_RULE)]
_ID_RULE = "letters, digits, '.', '_', '@' and '-', starting with a letter or digit, at most 64"
AgentId = Annotated[str, _name_check("agent id", _ID_RE, _ID_RULE)]
UserName = Annotated[str, _name_check("user name", _ID_RE, _ID_RULE)]
LanguageCode = Annotated[
    str, _name_check("language code", LANG_RE, "an ISO 639 code of 2-3 lower-case letters")
]
SkillLevel = Annotated[int, Field(ge=1, le=10)]
Labels = dict[LanguageCode, Annotated[str, Field(min_length=1)]]
