"""Live events over Server-Sent Events: storage's events stream relayed to listeners.

`GET /api/eval/{eval_id}/events` follows one evaluation to its end; `GET /api/events` follows
every event, for operators. One reader per process (`hub.EventHub`) reads the Redis stream and
fans the entries out to the listeners (`hub.Listener`); `service` turns them into messages,
resuming from a `Last-Event-ID`; `routes` only adapts that to HTTP.
"""
