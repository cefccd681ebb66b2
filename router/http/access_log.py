"""The HTTP access log without query strings.

Query strings may carry secrets a person was handed (the web form's private status key,
`/status/<ref>?key=...`); aiohttp's default line (`%r`) would write them to the log. This logger
writes the method, the path, the status, the size and the time taken, never the query.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class PathOnlyAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs', request.remote, request.method, request.path,
            response.status, response.body_length, time,
        )
