"""The DynamoDB adapter of the store port."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, TypeVar

from gatekey import aws
from gatekey.aws import dynamodb_items as items
from gatekey.aws.errors import translated
from gatekey.config import Config
from gatekey.credentials import parse_client_id
from gatekey.errors import (
    AlreadyExists,
    ConcurrentModification,
    DependencyError,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from gatekey.model import AuditEvent, ServiceToken, TokenStatus
from gatekey.revocations import AccessTokenRevocations
from gatekey.store import layout
from gatekey.store.base import Page, RunState, TokenStore, validate_limit
from gatekey.store.due import DueSchedule

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A write whose condition failed, or a transaction that a condition or a concurrent one
# cancelled: the store says why from a fresh read (_raise_for_lost_write).
_CONDITION_FAILED: Final = {"ConditionalCheckFailedException": ConcurrentModification}
_CANCELLED: Final = {"TransactionCanceledException": ConcurrentModification}

_NAME_INDEX_KEYS: Final = frozenset({"pk", "sk", "entity", "name"})
_EVENT_KEYS: Final = frozenset({"pk", "sk"})


class DynamoDBTokenStore(TokenStore):
    def __init__(
        self,
        table_name: str,
        *,
        audit_retention_days: int = 400,
        client: DynamoDBClient | None = None,
        schedule: DueSchedule | None = None,
    ) -> None:
        self.table_name = table_name
        self.audit_retention_days = audit_retention_days
        self._client = client
        self.schedule = schedule or DueSchedule()

    @classmethod
    def from_config(
        cls, config: Config, client: DynamoDBClient | None = None
    ) -> DynamoDBTokenStore:
        return cls(
            config.table_name,
            audit_retention_days=config.audit_retention_days,
            client=client,
            schedule=DueSchedule(config.reminder_days),
        )

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws.client("dynamodb", aws.API)
        return self._client

    # -- reads -------------------------------------------------------------------------------

    def get(self, client_id: str, *, consistent: bool = False) -> ServiceToken:
        parse_client_id(client_id)
        response = self._call(
            self.client.get_item,
            TableName=self.table_name,
            Key=items.token_key(client_id),
            ConsistentRead=consistent,
        )
        if "Item" not in response:
            raise NotFound(f"service token {client_id} does not exist")
        return items.token_from_item(response["Item"])

    def list(
        self,
        *,
        limit: int = 50,
        next_token: str | None = None,
        name: str | None = None,
        status: TokenStatus | None = None,
        name_prefix: str | None = None,
        owner: str | None = None,
    ) -> Page[ServiceToken]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {":entity": {"S": layout.TOKEN_ENTITY}}
        key = "entity = :entity"
        if name is not None:
            key += " AND #name = :name"
            names["#name"] = "name"
            values[":name"] = {"S": name}
        elif name_prefix is not None:
            key += " AND begins_with(#name, :prefix)"
            names["#name"] = "name"
            values[":prefix"] = {"S": name_prefix}
        filters = []
        if status is not None:
            filters.append("#status = :status")
            names["#status"] = "status"
            values[":status"] = {"S": status.value}
        if owner is not None:
            filters.append("#owner = :owner")
            names["#owner"] = "owner"
            values[":owner"] = {"S": owner}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": layout.BY_NAME_INDEX,
            "Limit": validate_limit(limit),
            "KeyConditionExpression": key,
            "ExpressionAttributeValues": values,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        return self._query(request, next_token, _NAME_INDEX_KEYS, items.token_from_item)

    def events(
        self, client_id: str, *, limit: int = 50, next_token: str | None = None
    ) -> Page[AuditEvent]:
        parse_client_id(client_id)
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Limit": validate_limit(limit),
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :events)",
            "ExpressionAttributeValues": {
                ":pk": {"S": layout.token_pk(client_id)},
                ":events": {"S": layout.EVENT_SK_PREFIX},
            },
            "ScanIndexForward": False,
        }
        return self._query(request, next_token, _EVENT_KEYS, items.event_from_item)

    def due(self, before: int, *, limit: int = 100, next_token: str | None = None) -> Page[str]:
        index = (layout.BY_DUE_INDEX, "due_pk", "next_due_at")
        return self._ids_before(*index, before, limit, next_token)

    def unscheduled(self, *, limit: int = 100, next_token: str | None = None) -> Page[str]:
        index = (layout.BY_EXPIRY_INDEX, "expiry_pk", "expires_at")
        return self._ids_before(*index, None, limit, next_token)

    def grace_ended(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        index = (layout.BY_GRACE_END_INDEX, "grace_pk", "previous_client_secret_expires_at")
        return self._ids_before(*index, before, limit, next_token)

    def idle_since_before(
        self, before: int, *, limit: int = 100, next_token: str | None = None
    ) -> Page[str]:
        index = (layout.BY_IDLE_INDEX, "idle_pk", "idle_since")
        return self._ids_before(*index, before, limit, next_token)

    def _ids_before(
        self,
        index: str,
        partition: str,
        sort: str,
        before: int | None,
        limit: int,
        next_token: str | None,
    ) -> Page[str]:
        """Client IDs from a sparse keys-only index whose partition holds every token in it,
        sort key at or before `before` (None: all of them), smallest first."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "Limit": validate_limit(limit),
            "KeyConditionExpression": "#p = :entity",
            "ExpressionAttributeNames": {"#p": partition},
            "ExpressionAttributeValues": {":entity": {"S": layout.TOKEN_ENTITY}},
        }
        if before is not None:
            request["KeyConditionExpression"] += " AND #s <= :before"
            request["ExpressionAttributeNames"]["#s"] = sort
            request["ExpressionAttributeValues"][":before"] = {"N": str(before)}
        keys = frozenset({"pk", "sk", partition, sort})
        return self._query(request, next_token, keys, _client_id_of)

    def _query(
        self,
        request: dict[str, Any],
        next_token: str | None,
        allowed_keys: frozenset[str],
        decode: Callable[[Any], T],
    ) -> Page[T]:
        start = layout.decode_page_token(next_token, allowed_keys)
        if start is not None:
            request["ExclusiveStartKey"] = start
        try:
            response = self._call(self.client.query, **request)
        except DependencyError as exc:
            # A well-formed token that DynamoDB rejects was not issued for this query.
            if start is not None and "ValidationException" in exc.message:
                raise ValidationError("next_token", "is not a page token for this query") from exc
            raise
        return Page(
            [decode(item) for item in response.get("Items", [])],
            layout.encode_page_token(response.get("LastEvaluatedKey")),
        )

    # -- writes ------------------------------------------------------------------------------

    def create(self, token: ServiceToken, event: AuditEvent) -> ServiceToken:
        token = replace(token, version=1)
        request = items.create_request(
            self.table_name, token, event, self.audit_retention_days, self.schedule
        )
        if not self._transact(request):
            raise AlreadyExists(f"service token {token.client_id} already exists")
        return token

    def update(
        self, token: ServiceToken, event: AuditEvent, *, if_unused: bool = False
    ) -> ServiceToken:
        stored = replace(token, version=token.version + 1)
        request = items.update_request(
            self.table_name,
            stored,
            token.version,
            event,
            self.audit_retention_days,
            self.schedule,
            if_unused=if_unused,
        )
        if not self._transact(request):
            self._raise_for_lost_write(token.client_id, read=token if if_unused else None)
        return stored

    def reindex(self, token: ServiceToken) -> bool:
        return self._conditional_update(
            items.reindex_request(self.table_name, token, self.schedule)
        )

    def delete(self, token: ServiceToken, event: AuditEvent) -> None:
        request = items.delete_request(
            self.table_name, token.client_id, token.version, event, self.audit_retention_days
        )
        if not self._transact(request):
            self._raise_for_lost_write(token.client_id, revoked_is_final=False)

    def record_last_seen(self, client_id: str, now: int, min_interval: int) -> bool:
        parse_client_id(client_id)
        return self._conditional_update(
            items.last_seen_request(self.table_name, client_id, now, min_interval)
        )

    def save_revocations(
        self,
        client_id: str,
        revocations: AccessTokenRevocations,
        *,
        read_version: int,
        event: AuditEvent,
    ) -> bool:
        parse_client_id(client_id)
        request = items.revocations_request(
            self.table_name,
            client_id,
            revocations,
            read_version,
            event,
            self.audit_retention_days,
        )
        if self._transact(request):
            return True
        self.get(client_id, consistent=True)  # NotFound if the token is gone
        return False

    def run_state(self) -> RunState | None:
        response = self._call(
            self.client.get_item,
            TableName=self.table_name,
            Key=items.RUN_KEY,
            ConsistentRead=True,
        )
        if "Item" not in response:
            return None
        return RunState(*items.run_state_from_item(response["Item"]))

    def save_run_state(self, state: RunState, *, replaces: str | None) -> bool:
        return self._conditional_update(
            items.run_state_request(
                self.table_name, state.run_id, state.due_before, state.positions, replaces
            )
        )

    def _conditional_update(self, request: dict[str, Any]) -> bool:
        """One UpdateItem; False when its condition did not hold."""
        try:
            with translated("DynamoDB UpdateItem failed", meaning=_CONDITION_FAILED):
                self.client.update_item(**request)
        except ConcurrentModification:
            return False
        return True

    def _transact(self, request: Sequence[TransactWriteItemTypeDef]) -> bool:
        """Run the transaction; False when a condition or a concurrent transaction stopped it."""
        try:
            with translated("DynamoDB TransactWriteItems failed", meaning=_CANCELLED):
                self.client.transact_write_items(TransactItems=list(request))
        except ConcurrentModification as lost:
            cause: Any = lost.__cause__  # the ClientError: its answer says why, item by item
            reasons = {r.get("Code") for r in cause.response.get("CancellationReasons", [])}
            if reasons - {"None", "ConditionalCheckFailed", "TransactionConflict", None}:
                raise DependencyError(
                    f"DynamoDB transaction cancelled: {sorted(map(str, reasons))}"
                ) from cause
            return False
        return True

    def _raise_for_lost_write(
        self,
        client_id: str,
        *,
        revoked_is_final: bool = True,
        read: ServiceToken | None = None,
    ) -> None:
        """Say why a conditional write failed, from a consistent read of what is stored now."""
        current = self.get(client_id, consistent=True)  # raises NotFound if it is gone
        if revoked_is_final and current.status is TokenStatus.REVOKED:
            raise InvalidTransition(f"service token {client_id} is revoked; revocation is final")
        if read is not None and current.version == read.version:
            raise ConcurrentModification(f"service token {client_id} was used since it was read")
        logger.info("optimistic lock lost", extra={"client_id": client_id})
        raise ConcurrentModification(
            f"service token {client_id} was changed by someone else (now at version "
            f"{current.version}); read it again and retry"
        )

    @staticmethod
    def _call(operation: Callable[..., Any], **request: Any) -> Any:
        with translated("DynamoDB request failed"):
            return operation(**request)


def _client_id_of(key: Any) -> str:
    return str(key["pk"]["S"]).removeprefix("TOKEN#")
