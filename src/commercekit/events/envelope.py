"""The CloudEvents 1.0 envelope every commercekit event travels in.

```python
event = Envelope.wrap(ReservationCreated(...), source="inventory")
raw = event.to_json()  # the bytes on the wire (CloudEvents structured JSON)
```

The envelope carries the CloudEvents required attributes (``id``, ``source``,
``specversion``, ``type``), the optional ``time``, ``subject`` and
``datacontenttype``, and two extension attributes: ``schemaversion`` (the
payload's contract version) and ``correlationid`` (ties the events of one
flow together). Extension names are lower-case letters only, as CloudEvents
requires; in Python they read `schema_version` and `correlation_id`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from commercekit.events.payload import EventPayload

__all__ = ["CONTENT_TYPE", "SPEC_VERSION", "WIRE_REQUIRED", "Envelope"]

SPEC_VERSION = "1.0"
"""The CloudEvents version of the envelope."""

CONTENT_TYPE = "application/cloudevents+json"
"""The content type of a whole envelope on the wire (CloudEvents structured mode)."""

WIRE_REQUIRED = ("id", "source", "specversion", "type", "time", "schemaversion", "data")
"""The attributes every event on the wire carries (a decoder refuses one without them)."""

P = TypeVar("P", bound=EventPayload)

_Text = Field(min_length=1, max_length=500)


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Envelope(BaseModel, Generic[P]):
    """One event: CloudEvents attributes around a typed payload (`data`).

    Build one with `wrap`; read one from bytes with `Catalog.decode`. The
    envelope is immutable and refuses unknown attributes.

    Attributes:
        id: unique per event; consumers deduplicate on it. A UUID by default.
        source: who produced the event (``"inventory"``, ``"/payments"``...).
        specversion: always ``"1.0"``.
        type: the dotted, past-tense event type (``"reservation.expired"``).
        time: when it happened, timezone-aware (UTC by default).
        subject: what it is about; the partition key (reservation id, user id).
        datacontenttype: always ``"application/json"``.
        schema_version: the payload's contract version (``schemaversion`` on the wire).
        correlation_id: the flow it belongs to (``correlationid`` on the wire).
        data: the payload.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        # On the wire these are always present: a decoded event must carry them.
        json_schema_extra={"required": list(WIRE_REQUIRED)},
    )

    id: str = Field(default_factory=_new_id, min_length=1, max_length=200)
    source: str = _Text
    specversion: Literal["1.0"] = "1.0"
    type: str = Field(min_length=1, max_length=200, pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
    time: AwareDatetime = Field(default_factory=_now)
    subject: str | None = Field(default=None, min_length=1, max_length=500)
    datacontenttype: Literal["application/json"] = "application/json"
    schema_version: int = Field(alias="schemaversion", ge=1)
    correlation_id: str | None = Field(
        default=None, alias="correlationid", min_length=1, max_length=200
    )
    data: P

    @classmethod
    def wrap(
        cls,
        payload: P,
        *,
        source: str,
        correlation_id: str | None = None,
        id: str | None = None,
        time: dt.datetime | None = None,
    ) -> Envelope[P]:
        """Put `payload` in a new envelope: type, version and subject come from its model.

        Args:
            payload: the event's data.
            source: who produces the event.
            correlation_id: the flow the event belongs to, if any.
            id: a deterministic id (to make a retried producer idempotent); a UUID by default.
            time: when it happened; now by default.
        """
        fields: dict[str, Any] = {
            "source": source,
            "type": payload.event_type,
            "subject": payload.partition_key(),
            "schema_version": payload.schema_version,
            "correlation_id": correlation_id,
            "data": payload,
        }
        if id is not None:
            fields["id"] = id
        if time is not None:
            fields["time"] = time
        model = cast("type[Envelope[P]]", Envelope[type(payload)])  # type: ignore[misc]
        return model(**fields)

    @property
    def key(self) -> str:
        """The partition key: the payload's key field (reservation id, user id...)."""
        return self.data.partition_key()

    def to_json(self) -> bytes:
        """The envelope as compact UTF-8 JSON (CloudEvents structured mode)."""
        return self.model_dump_json(by_alias=True).encode()

    def follow(self, payload: P, *, source: str) -> Envelope[P]:
        """A new event caused by this one: it keeps this event's correlation id (or its id)."""
        return Envelope.wrap(payload, source=source, correlation_id=self.correlation_id or self.id)
