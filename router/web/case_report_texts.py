"""The words of the case report page in the city's languages: staff read it in English (like
the rest of the staff pages), residents read the public statistics (/stats/cases?lang=) in
theirs."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "staff_title": "Cases report", "public_title": "Case statistics",
        "from": "From", "to": "To", "show": "Show",
        "range": "Days {since} to {until} in {tz}. Opened, completed and rejected count what "
                 "happened in these days; open and overdue are now.",
        "by_category": "By category", "by_unit": "By unit",
        "opened": "Opened", "completed": "Completed", "rejected": "Rejected",
        "open_now": "Open now", "overdue_now": "Overdue now",
        "median": "Median hours to complete", "total": "Total",
        "open_cases": "Open cases", "map_title": "Open cases (~100 m)",
        "map_empty": "No open cases with a location", "overdue": "overdue",
        "rounded": "Places are rounded to about 100 m. The figures may be up to a minute old.",
        "lookup": "Look up your report by its number",
    },
    "pl": {
        "staff_title": "Raport zgłoszeń", "public_title": "Statystyka zgłoszeń",
        "from": "Od", "to": "Do", "show": "Pokaż",
        "range": "Dni od {since} do {until} ({tz}). Przyjęte, załatwione i odrzucone liczą "
                 "to, co zdarzyło się w tych dniach; otwarte i po terminie to stan obecny.",
        "by_category": "Według kategorii", "by_unit": "Według jednostki",
        "opened": "Przyjęte", "completed": "Załatwione", "rejected": "Odrzucone",
        "open_now": "Otwarte", "overdue_now": "Po terminie",
        "median": "Mediana godzin do załatwienia", "total": "Razem",
        "open_cases": "Otwarte zgłoszenia", "map_title": "Otwarte zgłoszenia (~100 m)",
        "map_empty": "Brak otwartych zgłoszeń z lokalizacją", "overdue": "po terminie",
        "rounded": "Miejsca są zaokrąglone do ok. 100 m. Dane mogą być sprzed minuty.",
        "lookup": "Sprawdź swoje zgłoszenie po numerze",
    },
    "uk": {
        "staff_title": "Звіт про повідомлення", "public_title": "Статистика повідомлень",
        "from": "Від", "to": "До", "show": "Показати",
        "range": "Дні з {since} по {until} ({tz}). Прийняті, виконані та відхилені — те, що "
                 "сталося в ці дні; відкриті та прострочені — на зараз.",
        "by_category": "За категоріями", "by_unit": "За підрозділами",
        "opened": "Прийнято", "completed": "Виконано", "rejected": "Відхилено",
        "open_now": "Відкриті", "overdue_now": "Прострочені",
        "median": "Медіана годин до виконання", "total": "Разом",
        "open_cases": "Відкриті повідомлення", "map_title": "Відкриті повідомлення (~100 м)",
        "map_empty": "Немає відкритих повідомлень з місцем", "overdue": "прострочене",
        "rounded": "Місця округлено приблизно до 100 м. Дані можуть бути хвилинної давності.",
        "lookup": "Перевірте своє повідомлення за номером",
    },
}


def texts(lang: str) -> dict[str, str]:
    return TEXTS.get(lang, TEXTS["en"])
