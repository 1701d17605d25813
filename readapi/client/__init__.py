"""The read client (CVec SDK shape) and its HTTP transport."""

from tagflow.readapi.client.client import Client

__all__ = ["Client"]
