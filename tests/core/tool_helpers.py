"""Shared models for the @tool tests."""

from __future__ import annotations

from pydantic import BaseModel


class Address(BaseModel):
    street: str
    zip: str


class DB(BaseModel):
    items: dict[str, Address] = {}
