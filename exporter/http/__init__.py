"""The HTTP side: the server and its routes, the scrape handler, the status page, the web
config (TLS, basic auth).

The package shares its name with the standard library's ``http``; absolute imports keep them apart
(``http.server`` is the standard library's, ``exporter.http.server`` this one).
"""
