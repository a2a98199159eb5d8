"""Talking to sFOX: decoding, the session, the feed worker, REST snapshots, rate limits and the WebSocket connection."""
