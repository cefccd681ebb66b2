"""cityline's HTTP side: one aiohttp application for the JSON API, the web pages and operations.

`router.http.app.create_app` builds it from the collaborators the composition root passes in
(`AppContext`); handlers reach them through the typed `web.AppKey`s defined there. Every error
response has one JSON shape, `{"error": {"code": ..., "message": ...}}`, so clients branch on a
stable code, never on wording.
"""
