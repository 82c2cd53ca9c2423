"""Where service tokens and their audit trail live: one port, DynamoDB and in-memory adapters."""

from gatekey.store.base import Page, TokenStore
from gatekey.store.dynamodb import DynamoDBTokenStore
from gatekey.store.memory import InMemoryTokenStore

__all__ = ["DynamoDBTokenStore", "InMemoryTokenStore", "Page", "TokenStore"]
