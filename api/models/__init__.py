"""Pydantic models of the HTTP API: request bodies (`requests`) and response bodies
(`responses`, used for validation docs: handlers build the wire dicts themselves)."""
