"""Shared core of tagflow: the error hierarchy and name validation used by every layer."""
