"""How statistics are written for people: percentages, durations and the queue table's
columns. One place, so `cityline stats`, the wall and the interval report page show a figure
the same way (tests compare the report's CSV with the CLI's JSON)."""

from __future__ import annotations

from router.stats import QueueFigures


def active(counters: dict[str, int]) -> bool:
    """Whether a row had any traffic at all (rows without are left out of reports)."""
    return any(counters.values())


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def secs(value: float | None) -> str:
    """8.0s below 100 s, then m:ss and h:mm:ss, as contact-centre reports show times."""
    if value is None:
        return "-"
    if value < 100:
        return f"{value:.1f}s"
    whole = round(value)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


# KB: first-contact resolutions from the knowledge base (kb_resolved); KB% of handled, and
# KB/FCR: their share of all first-contact resolutions.
QUEUE_COLUMNS = (
    "Offered", "Answered", "Aband", "Short", "SL", "Aband%", "ASA", "AHT", "Xfer%", "FCR%",
    "KB", "KB%", "KB/FCR", "RONA", "Timeout",
)  # fmt: skip


def queue_cells(f: QueueFigures) -> list[str]:
    return [
        str(f.offered), str(f.answered), str(f.abandoned), str(f.short_abandoned),
        pct(f.service_level), pct(f.abandonment_rate), secs(f.asa_s), secs(f.aht_s),
        pct(f.transfer_rate), pct(f.fcr_rate), str(f.kb_resolved), pct(f.kb_rate),
        pct(f.kb_fcr_share), str(f.rona), str(f.timeouts),
    ]  # fmt: skip
