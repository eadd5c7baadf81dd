"""The recommendation service's HTTP API (`service.py`); the guarded HTTP stack it runs on is
`serving.http`, shared with the model server."""
