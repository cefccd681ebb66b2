"""Polish public holidays (dni ustawowo wolne od pracy), computed for any year of the current law.

The list follows the Act of 18 January 1951 on public holidays as amended: 3 May and 11 November
came back in 1989/1990, Epiphany (6 January) was added from 2011 and Christmas Eve (24 December)
from 2025. Four holidays move with Easter (Gregorian computus): Easter Sunday and Monday,
Pentecost Sunday (Easter + 49 days) and Corpus Christi (Easter + 60 days, a Thursday).

Years before 1990 are refused rather than answered wrongly: the People's Republic had another
list (22 July, no 3 May), which no business-hours check needs.
"""

from __future__ import annotations

from datetime import date, timedelta

FIRST_YEAR = 1990  # the first year the current list of holidays applied in full
EPIPHANY_FROM = 2011  # Trzech Króli became a holiday again (Act of 24 September 2010)
CHRISTMAS_EVE_FROM = 2025  # Wigilia became a holiday (Act of 6 December 2024)


def easter_sunday(year: int) -> date:
    """Easter Sunday of the Gregorian calendar (the anonymous Gregorian algorithm,
    a.k.a. Meeus/Jones/Butcher), valid for every Gregorian year."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday_shift = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday_shift) // 451
    month, day = divmod(h + weekday_shift - 7 * m + 114, 31)
    return date(year, month, day + 1)


def polish_holidays(year: int) -> dict[date, str]:
    """Every public holiday of `year` in Poland: date -> Polish name, in date order.

    Pure: no clock, no I/O. Raises ValueError for years before 1990 (another law applied) or
    beyond what `datetime.date` holds.
    """
    if not FIRST_YEAR <= year <= 9999:
        raise ValueError(
            f"Polish public holidays are known for {FIRST_YEAR}..9999, not for {year}"
        )
    easter = easter_sunday(year)
    days: dict[date, str] = {
        date(year, 1, 1): "Nowy Rok",
        easter: "Wielkanoc",
        easter + timedelta(days=1): "Poniedziałek Wielkanocny",
        date(year, 5, 1): "Święto Pracy",
        date(year, 5, 3): "Święto Konstytucji 3 Maja",
        easter + timedelta(days=49): "Zielone Świątki (Zesłanie Ducha Świętego)",
        easter + timedelta(days=60): "Boże Ciało",
        date(year, 8, 15): "Wniebowzięcie Najświętszej Maryi Panny",
        date(year, 11, 1): "Wszystkich Świętych",
        date(year, 11, 11): "Narodowe Święto Niepodległości",
        date(year, 12, 25): "Boże Narodzenie (pierwszy dzień)",
        date(year, 12, 26): "Boże Narodzenie (drugi dzień)",
    }
    if year >= EPIPHANY_FROM:
        days[date(year, 1, 6)] = "Święto Trzech Króli"
    if year >= CHRISTMAS_EVE_FROM:
        days[date(year, 12, 24)] = "Wigilia Bożego Narodzenia"
    # the movable feasts never fall on a fixed holiday (Easter: 22 March..25 April, Corpus
    # Christi: 21 May..24 June), so the dict has 13 entries, 14 from 2025
    return dict(sorted(days.items()))


def polish_holiday(day: date) -> str | None:
    """Name of the public holiday on `day`, or None for a working day."""
    return _cached(day.year).get(day)


_CACHE: dict[int, dict[date, str]] = {}


def _cached(year: int) -> dict[date, str]:
    # a business-hours check runs on every call; the year's list is computed once
    found = _CACHE.get(year)
    if found is None:
        found = _CACHE[year] = polish_holidays(year)
    return found
