"""Treasure Data's `/v3` job API: see `api/td`."""

from api.td.routes import router

__all__ = ["router"]
