"""`gpumarket console`: a local web app over the marketplace's gRPC API.

api.py turns the typed gRPC clients into JSON documents and live feeds, server.py serves them
(and the assets in static/) over HTTP on loopback, or over TLS with a login token elsewhere.
The user's key stays in this process: the browser never sees it, the server signs.
"""
