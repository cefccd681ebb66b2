"""The `knowledge` block: where the first line's information cards come from.

The cards themselves are data files (``*.yaml``), like the IVR flows: the packaged ones in the
`knowledge` package directory, or a directory of the city's own. They are loaded and checked
against the configuration (topics, languages) when the HTTP server starts; `cityline
check-knowledge` checks them beforehand. See router/knowledge.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from router.config_sections import Section


class KnowledgeConfig(Section):
    """The knowledge base: information cards agents search on the desktop."""

    dir: Path | None = Field(
        None,
        description="directory of card files (*.yaml); null = the packaged cards (knowledge/); "
        "relative paths are relative to the working directory",
    )
    max_results: int = Field(
        20, ge=1, le=100, description="most cards one search answers with"
    )
