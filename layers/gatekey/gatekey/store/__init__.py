"""Where service tokens and their audit trail live: one port, DynamoDB and in-memory adapters."""

from gatekey.store.base import Page, RunState, TokenStore
from gatekey.store.due import DueSchedule
from gatekey.store.dynamodb import DynamoDBTokenStore
from gatekey.store.memory import InMemoryTokenStore

__all__ = [
    "DueSchedule",
    "DynamoDBTokenStore",
    "InMemoryTokenStore",
    "Page",
    "RunState",
    "TokenStore",
]
