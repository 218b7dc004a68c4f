"""`bridge web`: the self-service pages (issue 17). ``app.create_app(config)`` builds the ASGI app.

Layer: like the command line, it sits on top: it uses the linking library
(``link``, ``accounts``), the ledger and the use cases (``report``, the
pipeline's converter for previews); nothing imports it but ``bridge.cli``.
"""
