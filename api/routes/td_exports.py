"""Treasure Data's `/v3` exports: see `api/td/exports.py`."""

from api.td.exports import router

__all__ = ["router"]
