"""Where service tokens and their audit trail live: the port, its in-memory adapter, and the
table's layout. The DynamoDB adapter is gatekey.aws.dynamodb."""

from gatekey.store.base import Page, RunState, TokenStore
from gatekey.store.due import DueSchedule
from gatekey.store.memory import InMemoryTokenStore

__all__ = [
    "DueSchedule",
    "InMemoryTokenStore",
    "Page",
    "RunState",
    "TokenStore",
]
