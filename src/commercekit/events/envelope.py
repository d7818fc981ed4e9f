"""The CloudEvents 1.0 envelope every commercekit event travels in.

```python
event = Envelope.wrap(ReservationCreated(...), source="inventory")
raw = event.to_json()  # the bytes on the wire (CloudEvents structured JSON)
```

The envelope carries the CloudEvents required attributes (``id``, ``source``,
``specversion``, ``type``), the optional ``time``, ``subject`` and
``datacontenttype``, and extension attributes: ``schemaversion`` (the
payload's contract version), ``correlationid`` (ties the events of one
flow together) and, from the CloudEvents distributed-tracing extension,
``traceparent`` and ``tracestate`` (the W3C Trace Context of the span that
published the event: see `commercekit.tracing`). Extension names are
lower-case letters only, as CloudEvents requires; in Python they read
`schema_version`, `correlation_id`, `traceparent` and `tracestate`.

The buses and the outbox fill ``traceparent`` and ``tracestate`` from the
current trace context when an event carries none (`in_trace`); a consumer's
handler runs in a child span of the event's (`trace`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Generic, Literal, TypeVar, cast

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from commercekit import tracing
from commercekit.events.payload import EventPayload

__all__ = [
    "CONTENT_TYPE",
    "SPEC_VERSION",
    "TRACEPARENT_DESCRIPTION",
    "TRACESTATE_DESCRIPTION",
    "WIRE_REQUIRED",
    "Envelope",
]

SPEC_VERSION = "1.0"
"""The CloudEvents version of the envelope."""

CONTENT_TYPE = "application/cloudevents+json"
"""The content type of a whole envelope on the wire (CloudEvents structured mode)."""

WIRE_REQUIRED = ("id", "source", "specversion", "type", "time", "schemaversion", "data")
"""The attributes every event on the wire carries (a decoder refuses one without them)."""

P = TypeVar("P", bound=EventPayload)

_Text = Field(min_length=1, max_length=500)


def _traceparent(value: str) -> str:
    tracing.parse_traceparent(value)  # the pattern cannot say "not all zeros"
    return value


def _tracestate(value: str) -> str:
    if not tracing.valid_tracestate(value):
        raise ValueError("a tracestate is a W3C list of key=value members")
    return value


TRACEPARENT_DESCRIPTION = (
    "W3C Trace Context traceparent (version 00) of the span that published the event; "
    "CloudEvents distributed tracing extension"
)
"""What the ``traceparent`` attribute (and record header) holds, as the schemas say it."""
TRACESTATE_DESCRIPTION = "W3C Trace Context tracestate that travels with the traceparent"
"""What the ``tracestate`` attribute (and record header) holds, as the schemas say it."""

TraceParent = Annotated[
    str,
    Field(pattern=tracing.TRACEPARENT_PATTERN, description=TRACEPARENT_DESCRIPTION),
    AfterValidator(_traceparent),
]
TraceState = Annotated[
    str,
    Field(
        min_length=1,
        max_length=tracing.TRACESTATE_MAX_LENGTH,
        description=TRACESTATE_DESCRIPTION,
    ),
    AfterValidator(_tracestate),
]


_TRACE_FIELDS = ("traceparent", "tracestate")


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
        traceparent: the W3C ``traceparent`` of the span that published it (version 00).
        tracestate: the W3C ``tracestate`` that travels with it, if any.
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
    traceparent: TraceParent | None = None
    tracestate: TraceState | None = None
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
        trace: tracing.TraceContext | None = None,
    ) -> Envelope[P]:
        """Put `payload` in a new envelope: type, version and subject come from its model.

        Args:
            payload: the event's data.
            source: who produces the event.
            correlation_id: the flow the event belongs to, if any.
            id: a deterministic id (to make a retried producer idempotent); a UUID by default.
            time: when it happened; now by default.
            trace: the span it comes from; by default the bus or outbox that
                publishes it stamps the current one.
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
        if trace is not None:
            fields["traceparent"] = trace.traceparent
            fields["tracestate"] = trace.tracestate
        model = cast("type[Envelope[P]]", Envelope[type(payload)])  # type: ignore[misc]
        return model(**fields)

    @property
    def key(self) -> str:
        """The partition key: the payload's key field (reservation id, user id...)."""
        return self.data.partition_key()

    def to_json(self) -> bytes:
        """The envelope as compact UTF-8 JSON (CloudEvents structured mode).

        The tracing attributes are left out when the event has none, so an
        untraced event reads as it did before they existed.
        """
        untraced = {name for name in _TRACE_FIELDS if getattr(self, name) is None}
        return self.model_dump_json(by_alias=True, exclude=untraced or None).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka record headers of this event: its content type, and its trace context.

        The envelope in the value is what consumers read; the ``traceparent``
        and ``tracestate`` headers repeat its attributes for tools that trace
        Kafka records without decoding them.
        """
        found = [("content-type", CONTENT_TYPE.encode())]
        if self.traceparent is not None:
            found.append(("traceparent", self.traceparent.encode()))
        if self.tracestate is not None:
            found.append(("tracestate", self.tracestate.encode()))
        return found

    @property
    def trace(self) -> tracing.TraceContext | None:
        """The span that published this event (its ``traceparent`` and ``tracestate``), if any."""
        if self.traceparent is None:
            return None
        return tracing.TraceContext.parse(self.traceparent, self.tracestate)

    def in_trace(self, context: tracing.TraceContext | None = None) -> Envelope[P]:
        """This event, stamped with `context` (the current one by default) unless it has one.

        An event that carries a ``traceparent`` already, or with no context to
        stamp, is returned as it is.
        """
        if self.traceparent is not None:
            return self
        context = context or tracing.current()
        if context is None:
            return self
        return self.model_copy(
            update={"traceparent": context.traceparent, "tracestate": context.tracestate}
        )

    def follow(self, payload: P, *, source: str) -> Envelope[P]:
        """A new event caused by this one.

        It keeps this event's correlation id (or its id), and its trace: the
        current span's (a handler's), or else this event's own.
        """
        return Envelope.wrap(
            payload,
            source=source,
            correlation_id=self.correlation_id or self.id,
            trace=tracing.current() or self.trace,
        )
