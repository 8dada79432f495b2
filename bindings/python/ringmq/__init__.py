"""Python binding of libringmq (ctypes over include/ringmq.h).

Embed a broker in this process, or connect to a ringmq server; both give a
:class:`Client` with the same methods::

    import ringmq

    with ringmq.Broker("/tmp/ringmq-data", shards=2) as broker, broker.client() as client:
        client.create_topic("orders", partitions=3)
        offset = client.produce("orders", "first order", key="customer-7", partition=0)
        for record in client.consumer("orders", partition=0, start="earliest", timeout=0.5):
            print(record.offset, record.key, record.value)

    with ringmq.connect("127.0.0.1:9400") as client:
        client.produce("orders", b"...")
        with client.group_consumer("billing", ["orders"]) as member:   # a consumer group
            for record in member.poll(timeout=1.0):
                print(record.topic, record.partition, record.offset, record.value)
        with client.share_consumer("workers", "orders") as worker:    # a share group (a queue)
            for record in worker.receive(max_records=10, timeout=1.0):
                worker.accept(record)                                  # or release, reject, renew
        print(client.describe_group("billing"))

Keys, values and header values are ``bytes`` (``str`` is accepted and encoded
as UTF-8) or ``None`` (null). Records come back as :class:`Record` with bytes
copied out of the library's buffers. Every failure raises :class:`Error` (or a
subclass per code) carrying ``.code`` (the ``rmq_result``) and the library's
message.

The library is found through ``$RINGMQ_LIB``, then ``target/release`` and
``target/debug`` of the repository enclosing this package, then the system's
library path (``ctypes.util.find_library("ringmq")``).
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import enum
import math
import os
import threading
import time
import weakref
from typing import (
    TYPE_CHECKING,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)

from . import _ffi

if TYPE_CHECKING:
    from ctypes import Array
    from typing import Literal, TypedDict

    #: What keys, values and header values accept (None is null).
    _Data = Union[bytes, bytearray, memoryview, str, None]
    #: A header's key (not null).
    _HeaderKey = Union[bytes, bytearray, memoryview, str]
    #: Headers: (key, value) pairs, or a dict. Mapping rather than Dict so that a
    #: dict[str, bytes] (say) is accepted (Dict is invariant); but _headers tests for
    #: a dict exactly, and iterates any other mapping as if it held pairs.
    _Headers = Union[Mapping[str, _Data], Mapping[bytes, _Data], Iterable[Tuple[_HeaderKey, _Data]]]
    #: A topic or group name, an address, a mechanism: str or bytes.
    _Text = Union[str, bytes]
    #: Where a consumer starts, or where a group's partition without a commit does.
    _Start = Literal["earliest", "latest"]
    _AcksLike = Union["Acks", str, int]
    _AckLike = Union["Ack", str, int]

    class _RecordDict(TypedDict, total=False):
        """A record of produce_many given as a dict."""

        key: _Data
        value: _Data
        headers: Optional[_Headers]
        timestamp_ms: Optional[int]

    #: (key, value, headers, timestamp_ms) of a record to produce.
    _RecordParts = Tuple[_Data, _Data, Optional[_Headers], Optional[int]]
    #: One item of produce_many.
    _RecordItem = Union[
        _Data,
        "Record",
        "ShareRecord",
        _RecordDict,
        Tuple[_Data, _Data],
        Tuple[_Data, _Data, Optional[_Headers]],
        Tuple[_Data, _Data, Optional[_Headers], Optional[int]],
    ]
    #: Headers as they come back.
    _HeadersOut = List[Tuple[bytes, Optional[bytes]]]

    _E = TypeVar("_E", bound=enum.IntEnum)
    _HandleOwnerT = TypeVar("_HandleOwnerT", bound="_HandleOwner")

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "Acks",
    "Broker",
    "Client",
    "AuthenticationError",
    "NotAuthorizedError",
    "TlsError",
    "Consumer",
    "GroupConsumer",
    "ShareConsumer",
    "ProduceFuture",
    "Record",
    "ShareRecord",
    "Offsets",
    "GroupDescription",
    "GroupPartition",
    "Result",
    "connect",
    "library_path",
    "library_version",
    "Error",
    "NullPointerError",
    "InvalidArgumentError",
    "IoError",
    "UnknownTopicError",
    "TopicExistsError",
    "OffsetOutOfRangeError",
    "InvalidRecordError",
    "NoSpaceError",
    "StorageError",
    "ClosedError",
    "WouldBlockError",
    "BrokerError",
    "StartError",
    "UnknownGroupError",
    "InvalidStateError",
    "FencedError",
    "SequenceError",
    "PanicError",
]

#: The path (or name) the shared library was loaded from.
library_path = _ffi.library_path


def library_version() -> str:
    """The version of the loaded libringmq (``rmq_version()``)."""
    return _ffi.rmq_version().decode("utf-8", "replace")


# --- result codes and errors ---------------------------------------------------


class Result(enum.IntEnum):
    """rmq_result: the codes every C function returns."""

    OK = 0
    ERROR_NULL = 1
    ERROR_INVALID_ARGUMENT = 2
    ERROR_IO = 3
    ERROR_UNKNOWN_TOPIC = 4
    ERROR_TOPIC_EXISTS = 5
    ERROR_OFFSET_OUT_OF_RANGE = 6
    ERROR_INVALID_RECORD = 7
    ERROR_NO_SPACE = 8
    ERROR_STORAGE = 9
    ERROR_CLOSED = 10
    PENDING = 11
    ERROR_WOULD_BLOCK = 12
    ERROR_BROKER = 13
    ERROR_START = 14
    ERROR_UNKNOWN_GROUP = 15
    ERROR_INVALID_STATE = 16
    ERROR_FENCED = 17
    ERROR_SEQUENCE = 18
    ERROR_LOCKED = 19
    ERROR_AUTHENTICATION = 20
    ERROR_NOT_AUTHORIZED = 21
    ERROR_TLS = 22
    PANIC = 99


class Error(Exception):
    """A libringmq failure: ``.code`` is the rmq_result, ``.message`` the text of
    ``rmq_last_error()`` (or of the binding's own check)."""

    def __init__(self, code: int, message: str = ""):
        self.code = int(code)
        self.message = message
        super().__init__(code, message)

    @property
    def code_name(self) -> str:
        try:
            return "RMQ_" + Result(self.code).name
        except ValueError:
            return "rmq_result %d" % self.code

    def __str__(self) -> str:
        if self.message:
            return "%s (%s)" % (self.message, self.code_name)
        return self.code_name


class NullPointerError(Error):
    """RMQ_ERROR_NULL: a required pointer was NULL."""


class InvalidArgumentError(Error, ValueError):
    """RMQ_ERROR_INVALID_ARGUMENT: an argument was invalid."""


class IoError(Error):
    """RMQ_ERROR_IO: the connection to the server failed."""


class UnknownTopicError(Error):
    """RMQ_ERROR_UNKNOWN_TOPIC: no such topic or partition."""


class TopicExistsError(Error):
    """RMQ_ERROR_TOPIC_EXISTS: the topic already exists."""


class OffsetOutOfRangeError(Error):
    """RMQ_ERROR_OFFSET_OUT_OF_RANGE"""


class InvalidRecordError(Error):
    """RMQ_ERROR_INVALID_RECORD: a batch or record was refused as corrupt or too large."""


class NoSpaceError(Error):
    """RMQ_ERROR_NO_SPACE: the disk is full; nothing was appended."""


class StorageError(Error):
    """RMQ_ERROR_STORAGE: a storage failure."""


class ClosedError(Error):
    """RMQ_ERROR_CLOSED: the broker is shutting down or closed, or this handle is closed."""


class WouldBlockError(Error):
    """RMQ_ERROR_WOULD_BLOCK: the asynchronous queue is full; retry later."""


class BrokerError(Error):
    """RMQ_ERROR_BROKER: any other error reported by the broker."""


class StartError(Error):
    """RMQ_ERROR_START: the broker could not start."""


class UnknownGroupError(Error):
    """RMQ_ERROR_UNKNOWN_GROUP: no such consumer or share group."""


class InvalidStateError(Error):
    """RMQ_ERROR_INVALID_STATE: the group's state refuses the operation (a stale
    generation, an unknown member, or acknowledging a record this member does
    not hold: its lease expired, or it was acknowledged already)."""


class FencedError(Error):
    """RMQ_ERROR_FENCED: an idempotent producer was fenced by a newer instance."""


class SequenceError(Error):
    """RMQ_ERROR_SEQUENCE: an idempotent batch out of sequence (nothing was appended)."""


class LockedError(StartError):
    """RMQ_ERROR_LOCKED: the data directory is held by another broker (in this
    process or another); the message names the directory and the holder's pid."""


class AuthenticationError(Error):
    """RMQ_ERROR_AUTHENTICATION: the server refused the credentials, or wants
    some (``connect(bootstrap, user=..., password=...)``)."""


class NotAuthorizedError(Error, PermissionError):
    """RMQ_ERROR_NOT_AUTHORIZED: the user's ACLs do not allow this on the topic
    or group (or it is for super users); nothing changed."""


class TlsError(Error):
    """RMQ_ERROR_TLS: the server's certificate was refused (unknown CA,
    expired, not for this host), the server refused the client's, or a TLS
    file did not load; the message says which."""


class PanicError(Error):
    """RMQ_PANIC: a panic inside the library was caught at the boundary."""


_ERRORS: Dict[int, Type[Error]] = {
    Result.ERROR_NULL: NullPointerError,
    Result.ERROR_INVALID_ARGUMENT: InvalidArgumentError,
    Result.ERROR_IO: IoError,
    Result.ERROR_UNKNOWN_TOPIC: UnknownTopicError,
    Result.ERROR_TOPIC_EXISTS: TopicExistsError,
    Result.ERROR_OFFSET_OUT_OF_RANGE: OffsetOutOfRangeError,
    Result.ERROR_INVALID_RECORD: InvalidRecordError,
    Result.ERROR_NO_SPACE: NoSpaceError,
    Result.ERROR_STORAGE: StorageError,
    Result.ERROR_CLOSED: ClosedError,
    Result.ERROR_WOULD_BLOCK: WouldBlockError,
    Result.ERROR_BROKER: BrokerError,
    Result.ERROR_START: StartError,
    Result.ERROR_UNKNOWN_GROUP: UnknownGroupError,
    Result.ERROR_INVALID_STATE: InvalidStateError,
    Result.ERROR_FENCED: FencedError,
    Result.ERROR_SEQUENCE: SequenceError,
    Result.ERROR_LOCKED: LockedError,
    Result.ERROR_AUTHENTICATION: AuthenticationError,
    Result.ERROR_NOT_AUTHORIZED: NotAuthorizedError,
    Result.ERROR_TLS: TlsError,
    Result.PANIC: PanicError,
}


def _error(code: int, message: str) -> Error:
    return _ERRORS.get(code, Error)(code, message)


def _check(code: int) -> None:
    """Raises the Error of a failed call. Must run right after the call, on the
    same thread: rmq_last_error() is per thread and valid until the next call."""
    if code != 0:
        raise _error(code, _ffi.rmq_last_error().decode("utf-8", "replace"))


def _invalid(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(Result.ERROR_INVALID_ARGUMENT, message)


def _closed(what: str) -> ClosedError:
    return ClosedError(Result.ERROR_CLOSED, "%s is closed" % what)


# --- argument conversion ---------------------------------------------------------


class Acks(enum.IntEnum):
    """rmq_acks: when a produce returns."""

    #: Queued; no acknowledgement (no offset).
    NONE = 0
    #: In the broker's page cache: survives a crash of the broker.
    WRITTEN = 1
    #: fdatasync'ed: survives power loss.
    DURABLE = 2


def _enum_value(cls: Type[_E], value: object, what: str) -> int:
    # Validated here: the C functions take these as integers, and the library
    # refuses any other value; a name (any case) or a member is accepted.
    if isinstance(value, str):
        member = cls.__members__.get(value.upper())
        if member is not None:
            return member.value
    elif isinstance(value, int) and not isinstance(value, bool) and value in {m.value for m in cls}:
        return int(value)
    names = ", ".join("'%s'" % name.lower() for name in cls.__members__)
    raise _invalid("%s must be one of %s (or a member of %s), not %r" % (what, names, cls.__name__, value))


def _acks(acks: _AcksLike) -> int:
    return _enum_value(Acks, acks, "acks")


class Ack(enum.IntEnum):
    """rmq_ack: how a share-group member acknowledges a record."""

    #: Done: never delivered again.
    ACCEPT = 1
    #: Give it back: delivered again (or dead-lettered after max deliveries).
    RELEASE = 2
    #: Poison: straight to the dead-letter topic.
    REJECT = 3
    #: Keep it: the lease starts over.
    RENEW = 4


def _ack(kind: _AckLike) -> int:
    return _enum_value(Ack, kind, "kind")


def _data(value: object, what: str) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError("%s must be bytes, str or None, not %s" % (what, type(value).__name__))


def _text(value: object, what: str) -> bytes:
    """A NUL-terminated string argument (topic names, addresses, paths)."""
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, bytes):
        data = value
    else:
        raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))
    if b"\0" in data:
        raise _invalid("%s contains a NUL byte" % what)
    return data


def _integer(value: object, what: str, low: int, high: int) -> int:
    # ctypes silently truncates out-of-range integers: check before every call.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %s" % (what, type(value).__name__))
    if not low <= value <= high:
        raise _invalid("%s %d out of range [%d, %d]" % (what, value, low, high))
    return value


_U32_MAX = 2**32 - 1
_I32_MAX = 2**31 - 1
_I64_MAX = 2**63 - 1
_U64_MAX = 2**64 - 1


def _milliseconds(timeout: float) -> int:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number of seconds, not %s" % type(timeout).__name__)
    if timeout < 0 or math.isnan(timeout):
        raise _invalid("timeout %r is negative" % (timeout,))
    return int(math.ceil(timeout * 1000))


def _headers(headers: Optional[_Headers], keep: List[object]) -> Tuple[Optional[Array[_ffi.HeaderIn]], int]:
    """(HeaderIn array or None, count) of a list of (key, value) pairs or a dict."""
    if not headers:
        return None, 0
    pairs: List[Tuple[object, object]] = (
        list(headers.items())
        if isinstance(headers, dict)
        # pairs (or a mapping that is not a dict: each item is refused below unless it is a pair)
        else list(cast("Iterable[Tuple[object, object]]", headers))
    )
    array = (_ffi.HeaderIn * len(pairs))()
    keep.append(array)
    slot: _ffi.HeaderIn
    for slot, pair in zip(array, pairs):
        try:
            key, value = pair
        except (TypeError, ValueError):
            raise TypeError("a header must be a (key, value) pair, not %r" % (pair,)) from None
        key = _data(key, "a header key")
        if key is None:
            raise TypeError("a header key must be bytes or str, not None")
        value = _data(value, "a header value")
        keep.append(key)
        keep.append(value)
        slot.key, slot.key_len = key, len(key)
        slot.value, slot.value_len = value, (0 if value is None else len(value))
    return array, len(pairs)


def _record_parts(item: _RecordItem) -> _RecordParts:
    """(key, value, headers, timestamp_ms) of one item of produce_many."""
    if isinstance(item, (Record, ShareRecord)):
        return item.key, item.value, item.headers, item.timestamp
    if isinstance(item, dict):
        unknown = set(item) - {"key", "value", "headers", "timestamp_ms"}
        if unknown:
            raise TypeError("unknown record fields %s" % sorted(unknown))
        return item.get("key"), item.get("value"), item.get("headers"), item.get("timestamp_ms")
    if isinstance(item, tuple):
        if not 2 <= len(item) <= 4:
            raise TypeError("a record tuple is (key, value[, headers[, timestamp_ms]])")
        padded = item + (None,) * (4 - len(item))
        return cast("_RecordParts", padded)  # (key, value[, headers[, timestamp_ms]]) padded to 4
    return None, item, None, None


def _records_in(items: Sequence[_RecordParts], keep: List[object]) -> Array[_ffi.RecordIn]:
    """A RecordIn array of (key, value, headers, timestamp_ms) tuples; every
    Python object it points into is appended to `keep`."""
    array = (_ffi.RecordIn * len(items))()
    keep.append(array)
    slot: _ffi.RecordIn
    for slot, (key, value, headers, timestamp_ms) in zip(array, items):
        key = _data(key, "key")
        value = _data(value, "value")
        keep.append(key)
        keep.append(value)
        slot.key, slot.key_len = key, (0 if key is None else len(key))
        slot.value, slot.value_len = value, (0 if value is None else len(value))
        header_array, count = _headers(headers, keep)
        if header_array is not None:
            slot.headers = ctypes.cast(header_array, ctypes.POINTER(_ffi.HeaderIn))
            slot.headers_len = count
        slot.timestamp_ms = 0 if timestamp_ms is None else _integer(timestamp_ms, "timestamp_ms", 0, _I64_MAX)
    return array


def _partition_in(partition: Optional[int]) -> int:
    return -1 if partition is None else _integer(partition, "partition", 0, _I32_MAX)


# --- records -----------------------------------------------------------------------


class Record(NamedTuple):
    """A consumed record. Bytes are copies (owned by Python)."""

    offset: int
    timestamp: int
    """Milliseconds since the Unix epoch."""
    key: Optional[bytes]
    value: Optional[bytes]
    headers: _HeadersOut
    topic: str
    partition: int


class Offsets(NamedTuple):
    """A partition's offsets: ``latest`` is one past the last record, and every
    record below ``durable`` is fdatasync'ed."""

    earliest: int
    latest: int
    durable: int


class GroupPartition(NamedTuple):
    """One partition of a :class:`GroupDescription`.

    Consumer groups: ``committed`` is the committed offset (None: nothing
    committed), ``end`` one past the last record, ``lag`` the records not yet
    committed (end - committed; every retained record when nothing is
    committed; None when unknown). Share groups: ``committed`` is the first
    offset not yet archived, and ``available``, ``acquired`` (leased) and
    ``archived`` count records (0 for consumer groups)."""

    topic: str
    partition: int
    committed: Optional[int]
    end: Optional[int]
    lag: Optional[int]
    available: int
    acquired: int
    archived: int


class GroupDescription(NamedTuple):
    """A group as the broker describes it (:meth:`Client.describe_group`).

    ``kind`` is 'consumer' or 'share'; ``state`` 'empty', 'rebalancing' or
    'stable' (a share group is 'stable' while a member received or
    acknowledged within the last minute); ``generation`` counts a consumer
    group's rebalances (0 for share groups); ``members`` is how many there are;
    ``partitions`` a list of :class:`GroupPartition` sorted by topic and
    partition."""

    kind: Union[str, int]  # the code itself when this binding does not know it
    state: Union[str, int]  # (likewise)
    generation: int
    members: int
    partitions: List[GroupPartition]

    @property
    def lag(self) -> int:
        """The lag of every partition whose lag is known, summed."""
        return sum(p.lag for p in self.partitions if p.lag is not None)


_GROUP_KINDS: Dict[int, str] = {0: "consumer", 1: "share"}
_GROUP_STATES: Dict[int, str] = {0: "empty", 1: "rebalancing", 2: "stable"}


def _bytes_at(pointer: Optional[int], length: int) -> Optional[bytes]:
    # NULL (None from a c_void_p field) is null; non-NULL with length 0 is empty.
    if pointer is None:
        return None
    return ctypes.string_at(pointer, length) if length else b""


def _copy_record(
    fetch: _ffi.Handle, index: int, raw: _ffi.RecordOut, header: _ffi.HeaderOut
) -> Tuple[int, int, Optional[bytes], Optional[bytes], _HeadersOut]:
    """(offset, timestamp, key, value, headers) of record `index`, copied."""
    _check(_ffi.rmq_fetch_record(fetch, index, ctypes.byref(raw)))
    headers: _HeadersOut = []
    for header_index in range(raw.headers_len):
        _check(_ffi.rmq_fetch_record_header(fetch, index, header_index, ctypes.byref(header)))
        key = _bytes_at(header.key, header.key_len)
        headers.append((b"" if key is None else key, _bytes_at(header.value, header.value_len)))
    return raw.offset, raw.timestamp_ms, _bytes_at(raw.key, raw.key_len), _bytes_at(raw.value, raw.value_len), headers


def _take_records(fetch: _ffi.Handle, topic: str, partition: int) -> List[Record]:
    """Copies every record out of `fetch`, then frees it (always)."""
    try:
        raw = _ffi.RecordOut()
        header = _ffi.HeaderOut()
        return [
            Record(*_copy_record(fetch, index, raw, header), topic, partition)
            for index in range(_ffi.rmq_fetch_count(fetch))
        ]
    finally:
        _ffi.rmq_fetch_free(fetch)


class _Origins:
    """Reads rmq_fetch_record_origin, decoding each topic name once."""

    def __init__(self, fetch: _ffi.Handle) -> None:
        self._fetch = fetch
        self._topic = ctypes.c_void_p()
        self._topic_len = ctypes.c_size_t()
        self._partition = ctypes.c_uint32()
        self._deliveries = ctypes.c_uint16()
        self._names: Dict[bytes, str] = {}

    def __call__(self, index: int) -> Tuple[str, int, int]:
        """(topic, partition, delivery count) of record `index`."""
        _check(
            _ffi.rmq_fetch_record_origin(
                self._fetch,
                index,
                ctypes.byref(self._topic),
                ctypes.byref(self._topic_len),
                ctypes.byref(self._partition),
                ctypes.byref(self._deliveries),
            )
        )
        name = _bytes_at(self._topic.value, self._topic_len.value) or b""
        topic = self._names.get(name)
        if topic is None:
            topic = self._names[name] = name.decode("utf-8", "replace")
        return topic, self._partition.value, self._deliveries.value


def _take_group_records(fetch: _ffi.Handle) -> List[Record]:
    """Copies every record of a group consumer's poll, with its topic and
    partition, then frees the fetch (always)."""
    try:
        raw = _ffi.RecordOut()
        header = _ffi.HeaderOut()
        origin = _Origins(fetch)
        records: List[Record] = []
        for index in range(_ffi.rmq_fetch_count(fetch)):
            topic, partition, _ = origin(index)
            records.append(Record(*_copy_record(fetch, index, raw, header), topic, partition))
        return records
    finally:
        _ffi.rmq_fetch_free(fetch)


# --- handle ownership ----------------------------------------------------------------


class _Owned:
    """One C handle shared by threads: any number of calls may use it at once;
    close() stops new calls, waits for the running ones, then frees it once."""

    __slots__ = ("_handle", "_free", "_lock", "_idle", "_users", "_what")

    def __init__(self, handle: _ffi.Handle, free: Callable[[_ffi.Handle], Optional[int]], what: str) -> None:
        self._handle = handle
        self._free = free
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._users = 0
        self._what = what

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> int:
        with self._lock:
            if self._handle is None:
                raise _closed(self._what)
            self._users += 1
            return self._handle

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._idle.notify_all()

    def close(self) -> Optional[int]:
        """Frees the handle (once); returns what the free function returned."""
        with self._lock:
            handle, self._handle = self._handle, None
            while self._users:
                self._idle.wait()
        if handle is not None:
            return self._free(handle)
        return None

    def abandon(self) -> None:
        """Frees without waiting (from __del__, when nothing else can hold it)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._free(handle)


def _new_handle() -> ctypes.c_void_p:
    return ctypes.c_void_p()


_live_brokers: weakref.WeakSet[Broker] = weakref.WeakSet()
_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_everything_at_exit() -> None:
    # A program that forgot close() still gets its queued asynchronous produces
    # sent and its partitions synced (clients before brokers, as the API asks).
    for client in list(_live_clients):
        try:
            client.close()
        except Exception:
            pass
    for broker in list(_live_brokers):
        try:
            broker.close()
        except Exception:
            pass


# --- broker ------------------------------------------------------------------------------


class Broker:
    """An embedded broker: shards running inside this process.

    ``Broker(path, shards=None, busy_poll=False, flush_interval_ms=None,
    segment_bytes=None)`` opens (creating if needed) the data directory ``path``.
    ``shards`` None is one per core (the count is fixed for a data directory);
    ``busy_poll`` makes shards and waiting clients spin instead of sleeping;
    ``flush_interval_ms`` also fdatasyncs data acknowledged as written that
    often; ``segment_bytes`` is the segment roll size (default 1 GiB).

    Thread-safe. Use it as a context manager, or call :meth:`close`: closing
    also closes every client (and consumer) opened on it first.
    """

    def __init__(
        self,
        path: Union[str, bytes, os.PathLike[str], os.PathLike[bytes]],
        shards: Optional[int] = None,
        busy_poll: bool = False,
        flush_interval_ms: Optional[int] = None,
        segment_bytes: Optional[int] = None,
    ) -> None:
        path = os.fspath(path)
        data_dir = _text(os.fsencode(path) if isinstance(path, str) else path, "path")
        options = _ffi.BrokerOptions(
            0 if shards is None else _integer(shards, "shards", 1, 65535),
            1 if busy_poll else 0,
            0 if flush_interval_ms is None else _integer(flush_interval_ms, "flush_interval_ms", 1, _U64_MAX),
            0 if segment_bytes is None else _integer(segment_bytes, "segment_bytes", 1, _U64_MAX),
        )
        self.path = path
        self._clients: weakref.WeakSet[Client] = weakref.WeakSet()
        self._consumers: weakref.WeakSet[_HandleOwner] = weakref.WeakSet()
        self._lock = threading.Lock()
        out = _new_handle()
        _check(_ffi.rmq_broker_open(data_dir, ctypes.byref(options), ctypes.byref(out)))
        self._owned = _Owned(out.value, _ffi.rmq_broker_close, "the broker")
        _live_brokers.add(self)

    @property
    def closed(self) -> bool:
        return self._owned.closed

    def client(self) -> "Client":
        """A client talking to this broker in-process (no TCP)."""
        with self._lock:  # not concurrently with close()
            with self._owned as broker:
                out = _new_handle()
                _check(_ffi.rmq_client_open_embedded(broker, ctypes.byref(out)))
                # str(): as %s always did, a bytes path shows as b'...'
                client = Client(out.value, self, "embedded client of %s" % str(self.path))
                self._clients.add(client)
                return client

    def close(self) -> None:
        """Closes every consumer and client opened on this broker, then shuts it
        down gracefully (in-flight requests finish, partitions are synced).
        Idempotent."""
        with self._lock:
            if self._owned.closed:
                return
            # An embedded call made after the broker is closed would never
            # return: nothing opened on it may stay usable.
            for consumer in list(self._consumers):
                try:
                    consumer.close()
                except Error:
                    pass  # a group member's last commit or leave failed; it is freed all the same
            for client in list(self._clients):
                client.close()
            _live_brokers.discard(self)
            # rmq_broker_close's result: not None, as the handle was open (checked above)
            _check(cast(int, self._owned.close()))

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._owned.closed:
                for consumer in list(self._consumers):
                    consumer._abandon()
                for client in list(self._clients):
                    client._owned.abandon()
                self._owned.abandon()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "<ringmq.Broker %r%s>" % (self.path, " closed" if self.closed else "")


# --- client ------------------------------------------------------------------------------


def _optional_text(value: Optional[str], what: str) -> Optional[bytes]:
    return None if value is None else _text(value, what)


def connect(
    bootstrap: str,
    user: Optional[str] = None,
    password: Optional[str] = None,
    mechanism: str = "SCRAM-SHA-256",
    *,
    tls: bool = False,
    tls_ca: Optional[str] = None,
    tls_cert: Optional[str] = None,
    tls_key: Optional[str] = None,
) -> "Client":
    """A client connected over TCP to the ringmq server at ``"HOST:PORT"``.

    With ``user`` and ``password``, every connection authenticates by
    ``mechanism`` (``"SCRAM-SHA-256"``, where the password never crosses the
    wire, or ``"PLAIN"``); refused credentials raise
    :class:`AuthenticationError`.

    With ``tls=True`` (implied by any ``tls_*`` argument) every connection
    speaks TLS, checking the server's certificate against the CAs in the PEM
    file ``tls_ca`` (default: the system's bundle) and the bootstrap host;
    ``tls_cert`` and ``tls_key`` (PEM, both or neither) are the client's own
    certificate for servers that require one. TLS failures raise
    :class:`TlsError`.
    """
    address = _text(bootstrap, "bootstrap")
    out = _new_handle()
    if (user is None) != (password is None):
        raise InvalidArgumentError(Result.ERROR_INVALID_ARGUMENT, "give both user and password, or neither")
    if (tls_cert is None) != (tls_key is None):
        raise InvalidArgumentError(Result.ERROR_INVALID_ARGUMENT, "give both tls_cert and tls_key, or neither")
    if tls or tls_ca is not None or tls_cert is not None:
        _check(_ffi.rmq_client_connect_tls(
            address, _optional_text(tls_ca, "tls_ca"), _optional_text(tls_cert, "tls_cert"), _optional_text(tls_key, "tls_key"),
            _optional_text(user, "user"), _optional_text(password, "password"), _text(mechanism, "mechanism"),
            ctypes.byref(out)))
    elif user is None or password is None:
        _check(_ffi.rmq_client_connect(address, ctypes.byref(out)))
    else:
        _check(_ffi.rmq_client_connect_auth(
            address, _text(user, "user"), _text(password, "password"), _text(mechanism, "mechanism"),
            ctypes.byref(out)))
    return Client(out.value, None, "client of %s" % address.decode("utf-8", "replace"))


class Client:
    """A client, in-process on a :class:`Broker` (``broker.client()``) or over TCP
    (:func:`connect`), with the same methods for both. Thread-safe.

    Use it as a context manager or call :meth:`close`, which first waits for
    the client's queued asynchronous produces.
    """

    def __init__(self, handle: _ffi.Handle, broker: Optional[Broker], description: str) -> None:
        # Private: use Broker.client() or ringmq.connect().
        self._owned = _Owned(handle, _ffi.rmq_client_close, "the client")
        self._broker = broker  # keeps an embedded broker alive as long as its clients
        self._description = description
        _live_clients.add(self)

    @property
    def closed(self) -> bool:
        return self._owned.closed

    def close(self) -> None:
        """Waits for the queued asynchronous produces, then frees the client.
        Consumers opened through it stay usable. Idempotent."""
        _live_clients.discard(self)
        self._owned.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._owned.abandon()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "<ringmq.Client %s%s>" % (self._description, " closed" if self.closed else "")

    # topics

    def create_topic(
        self,
        name: _Text,
        partitions: int = 1,
        retention_ms: Optional[int] = None,
        retention_bytes: Optional[int] = None,
    ) -> None:
        """Creates a topic. Retention None is the broker's default, -1 unlimited."""
        name = _text(name, "name")
        partitions = _integer(partitions, "partitions", 0, _U32_MAX)
        retention = [
            -2 if value is None else _integer(value, what, -1, _I64_MAX)
            for value, what in ((retention_ms, "retention_ms"), (retention_bytes, "retention_bytes"))
        ]
        with self._owned as client:
            _check(_ffi.rmq_topic_create(client, name, partitions, retention[0], retention[1]))

    def delete_topic(self, name: _Text) -> None:
        """Deletes a topic and its data."""
        name = _text(name, "name")
        with self._owned as client:
            _check(_ffi.rmq_topic_delete(client, name))

    def topics(self) -> List[Tuple[str, int]]:
        """Every topic as (name, partitions), sorted by name."""
        with self._owned as client:
            out = _new_handle()
            _check(_ffi.rmq_topics(client, ctypes.byref(out)))
        listing = out.value
        try:
            topics: List[Tuple[str, int]] = []
            name = ctypes.c_char_p()
            partitions = ctypes.c_uint32()
            for index in range(_ffi.rmq_topic_list_len(listing)):
                _check(_ffi.rmq_topic_list_get(listing, index, ctypes.byref(name), ctypes.byref(partitions)))
                # `name` is never NULL after RMQ_OK (include/ringmq.h)
                topics.append((cast(bytes, name.value).decode("utf-8"), partitions.value))
            return topics
        finally:
            _ffi.rmq_topic_list_free(listing)

    # offsets

    def offsets(self, topic: _Text, partition: int = 0) -> Offsets:
        """(earliest, latest, durable) offsets of a partition."""
        topic_name = _text(topic, "topic")
        partition = _integer(partition, "partition", 0, _U32_MAX)
        earliest, latest, durable = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
        with self._owned as client:
            _check(
                _ffi.rmq_partition_offsets(
                    client,
                    topic_name,
                    partition,
                    ctypes.byref(earliest),
                    ctypes.byref(latest),
                    ctypes.byref(durable),
                )
            )
        return Offsets(earliest.value, latest.value, durable.value)

    def offset_for_timestamp(self, topic: _Text, partition: int, timestamp_ms: int) -> Optional[int]:
        """The first offset whose timestamp is at or after ``timestamp_ms``
        (milliseconds since the epoch), or None when every record is older."""
        topic_name = _text(topic, "topic")
        partition = _integer(partition, "partition", 0, _U32_MAX)
        timestamp_ms = _integer(timestamp_ms, "timestamp_ms", 0, _I64_MAX)
        offset = ctypes.c_int64()
        with self._owned as client:
            _check(_ffi.rmq_offset_for_timestamp(client, topic_name, partition, timestamp_ms, ctypes.byref(offset)))
        return None if offset.value < 0 else offset.value

    # producing

    def produce(
        self,
        topic: _Text,
        value: _Data,
        key: _Data = None,
        headers: Optional[_Headers] = None,
        partition: Optional[int] = None,
        acks: _AcksLike = "durable",
        timestamp_ms: Optional[int] = None,
    ) -> Optional[int]:
        """Produces one record and waits as ``acks`` asks ('none', 'written',
        'durable'). Returns its offset, or None with acks 'none'.

        ``headers``: a list of (key, value) pairs (value may be None) or a dict.
        ``partition`` None lets Kafka's partitioner choose (by key, or spreading
        unkeyed records). ``timestamp_ms`` None (or 0) is now.
        """
        return self.produce_many(topic, [(key, value, headers, timestamp_ms)], partition=partition, acks=acks)

    def produce_many(
        self,
        topic: _Text,
        records: Iterable[_RecordItem],
        partition: Optional[int] = None,
        acks: _AcksLike = "durable",
    ) -> Optional[int]:
        """Produces records as one batch (one partition). Each item is a value,
        a ``(key, value[, headers[, timestamp_ms]])`` tuple, a dict with those
        keys, or a :class:`Record`. Returns the first record's offset (the others
        follow it), or None with acks 'none'."""
        topic_name = _text(topic, "topic")
        partition = _partition_in(partition)
        acks = _acks(acks)
        keep: List[object] = []
        items = [_record_parts(item) for item in records]
        array = _records_in(items, keep)
        offset = ctypes.c_int64(-1)
        with self._owned as client:
            _check(_ffi.rmq_produce(client, topic_name, partition, array, len(items), acks, ctypes.byref(offset)))
        return None if offset.value < 0 else offset.value

    def produce_async(
        self,
        topic: _Text,
        value: _Data,
        key: _Data = None,
        headers: Optional[_Headers] = None,
        partition: Optional[int] = None,
        acks: _AcksLike = "durable",
        timestamp_ms: Optional[int] = None,
    ) -> "ProduceFuture":
        """Queues one record and returns at once a :class:`ProduceFuture`.
        Produces from one client complete in the order they were queued. Raises
        :class:`WouldBlockError` when the client's asynchronous queue is full."""
        return self.produce_many_async(topic, [(key, value, headers, timestamp_ms)], partition=partition, acks=acks)

    def produce_many_async(
        self,
        topic: _Text,
        records: Iterable[_RecordItem],
        partition: Optional[int] = None,
        acks: _AcksLike = "durable",
    ) -> "ProduceFuture":
        """As :meth:`produce_many`, queued: returns a :class:`ProduceFuture`."""
        topic_name = _text(topic, "topic")
        partition = _partition_in(partition)
        acks = _acks(acks)
        keep: List[object] = []
        items = [_record_parts(item) for item in records]
        array = _records_in(items, keep)  # copied by the library before it returns
        out = _new_handle()
        with self._owned as client:
            _check(
                _ffi.rmq_produce_async(
                    client, topic_name, partition, array, len(items), acks, None, None, ctypes.byref(out)
                )
            )
        return ProduceFuture(out.value)

    # consuming

    def fetch(self, topic: _Text, partition: int = 0, offset: int = 0, timeout: float = 0.0) -> List[Record]:
        """The records of a partition from ``offset`` (at most a few MiB),
        waiting up to ``timeout`` seconds for at least one; maybe none."""
        topic_name = _text(topic, "topic")
        partition = _integer(partition, "partition", 0, _U32_MAX)
        offset = _integer(offset, "offset", 0, _U64_MAX)
        wait_ms = min(_milliseconds(timeout), _U32_MAX)
        out = _new_handle()
        with self._owned as client:
            _check(_ffi.rmq_fetch_records(client, topic_name, partition, offset, wait_ms, ctypes.byref(out)))
        return _take_records(out.value, topic_name.decode("utf-8"), partition)

    def consumer(
        self,
        topic: _Text,
        partition: int = 0,
        start: Union[_Start, int] = "earliest",
        timeout: Optional[float] = 1.0,
    ) -> "Consumer":
        """A :class:`Consumer` of one partition from ``start``: 'earliest',
        'latest' (only new records) or an offset. Iterating it stops after
        ``timeout`` seconds without records (None: never).

        Over TCP a consumer shares its client's connection, whose requests go
        one at a time: while it polls, the client's other calls wait. Give a
        consuming thread its own ``ringmq.connect`` client."""
        topic_name = _text(topic, "topic")
        partition = _integer(partition, "partition", 0, _U32_MAX)
        if start == "earliest":
            position = -2
        elif start == "latest":
            position = -1
        elif isinstance(start, int) and not isinstance(start, bool):
            position = _integer(start, "start", 0, _I64_MAX)
        else:
            raise _invalid("start must be 'earliest', 'latest' or an offset, not %r" % (start,))
        if timeout is not None:
            _milliseconds(timeout)
        out = _new_handle()
        with self._owned as client:
            _check(_ffi.rmq_consumer_open(client, topic_name, partition, position, ctypes.byref(out)))
        consumer = Consumer(out.value, topic_name.decode("utf-8"), partition, timeout)
        return self._adopt(consumer)

    def _adopt(self, consumer: _HandleOwnerT) -> _HandleOwnerT:
        if self._broker is not None:
            # A consumer may outlive its client, but an embedded one must not
            # outlive the broker (its calls would never return): the broker
            # closes it first.
            consumer._broker = self._broker
            self._broker._consumers.add(consumer)
        return consumer

    # groups

    def group_consumer(
        self,
        group: _Text,
        topics: Union[_Text, Iterable[_Text]],
        session_timeout_ms: Optional[int] = None,
        rebalance_timeout_ms: Optional[int] = None,
        heartbeat_interval_ms: Optional[int] = None,
        offset_reset: _Start = "earliest",
        manual_commit: bool = False,
    ) -> "GroupConsumer":
        """A member of the consumer group ``group`` reading ``topics`` (a list of
        names; one name is accepted too). The broker assigns each partition of
        the topics to one member of the group; the member joins on its first
        :meth:`GroupConsumer.poll`.

        ``session_timeout_ms`` (default 10000): the broker removes a member
        silent this long; ``rebalance_timeout_ms`` (10000): how long a rebalance
        waits for the members to join again; ``heartbeat_interval_ms`` (300): how
        often polls heartbeat. ``offset_reset``: where a partition without a
        committed offset starts, 'earliest' or 'latest'. ``manual_commit``
        False commits the member's positions before a rebalance and on close;
        True commits only on :meth:`GroupConsumer.commit` and
        :meth:`GroupConsumer.commit_offset`.

        It opens connections of its own (over TCP) and may outlive this client
        (not an embedded broker)."""
        group_name = _text(group, "group")
        if isinstance(topics, (str, bytes)):
            topics = [topics]
        names = [_text(topic, "topic") for topic in topics]
        if offset_reset not in ("earliest", "latest"):
            raise _invalid("offset_reset must be 'earliest' or 'latest', not %r" % (offset_reset,))
        options = _ffi.GroupOptions(
            *(
                0 if value is None else _integer(value, what, 1, _U32_MAX)
                for value, what in (
                    (session_timeout_ms, "session_timeout_ms"),
                    (rebalance_timeout_ms, "rebalance_timeout_ms"),
                    (heartbeat_interval_ms, "heartbeat_interval_ms"),
                )
            ),
            1 if offset_reset == "latest" else 0,
            1 if manual_commit else 0,
        )
        if not names:
            raise _invalid("topics is empty")
        array = (ctypes.c_char_p * len(names))(*names)
        out = _new_handle()
        with self._owned as client:
            _check(
                _ffi.rmq_group_consumer_open(
                    client, group_name, array, len(names), ctypes.byref(options), ctypes.byref(out)
                )
            )
        topic_names = [name.decode("utf-8") for name in names]
        return self._adopt(GroupConsumer(out.value, group_name.decode("utf-8"), topic_names))

    def share_consumer(
        self,
        group: _Text,
        topic: _Text,
        lease_ms: Optional[int] = None,
        max_deliveries: Optional[int] = None,
        dead_letter_topic: Optional[_Text] = None,
    ) -> "ShareConsumer":
        """A member of the share group ``group`` reading ``topic`` as a queue:
        the members of a group receive disjoint records, each under a lease,
        and acknowledge each one (:meth:`ShareConsumer.accept`, ``release``,
        ``reject``, ``renew``).

        ``lease_ms`` (default 30000): how long a received record stays this
        member's; ``max_deliveries`` (5): deliveries after which a released or
        expired record is dead-lettered; ``dead_letter_topic`` (default
        ``"<topic>.dlq"``). The broker keeps the last two per share-partition, as
        the last member's receive set them.

        It opens connections of its own (over TCP) and may outlive this client
        (not an embedded broker)."""
        group_name = _text(group, "group")
        topic_name = _text(topic, "topic")
        options = _ffi.ShareOptions(
            0 if lease_ms is None else _integer(lease_ms, "lease_ms", 1, _U32_MAX),
            0 if max_deliveries is None else _integer(max_deliveries, "max_deliveries", 1, 65535),
            None if dead_letter_topic is None else _text(dead_letter_topic, "dead_letter_topic"),
        )
        out = _new_handle()
        with self._owned as client:
            _check(
                _ffi.rmq_share_consumer_open(
                    client, group_name, topic_name, ctypes.byref(options), ctypes.byref(out)
                )
            )
        return self._adopt(ShareConsumer(out.value, group_name.decode("utf-8"), topic_name.decode("utf-8")))

    def describe_group(self, name: _Text) -> "GroupDescription":
        """A :class:`GroupDescription` of a consumer or share group; raises
        :class:`UnknownGroupError` when there is none of that name."""
        group_name = _text(name, "name")
        out = _new_handle()
        with self._owned as client:
            _check(_ffi.rmq_group_describe(client, group_name, ctypes.byref(out)))
        info = out.value
        try:
            kind, state, generation = ctypes.c_uint32(), ctypes.c_uint32(), ctypes.c_uint32()
            members = ctypes.c_size_t()
            _check(
                _ffi.rmq_group_info_summary(
                    info, ctypes.byref(kind), ctypes.byref(state), ctypes.byref(generation), ctypes.byref(members)
                )
            )
            partitions: List[GroupPartition] = []
            entry = _ffi.GroupPartition()
            for index in range(_ffi.rmq_group_info_partitions(info)):
                _check(_ffi.rmq_group_info_partition(info, index, ctypes.byref(entry)))
                partitions.append(
                    GroupPartition(
                        (_bytes_at(entry.topic, entry.topic_len) or b"").decode("utf-8", "replace"),
                        entry.partition,
                        None if entry.committed < 0 else entry.committed,
                        None if entry.end < 0 else entry.end,
                        None if entry.lag < 0 else entry.lag,
                        entry.available,
                        entry.acquired,
                        entry.archived,
                    )
                )
            return GroupDescription(
                _GROUP_KINDS.get(kind.value, kind.value),
                _GROUP_STATES.get(state.value, state.value),
                generation.value,
                members.value,
                partitions,
            )
        finally:
            _ffi.rmq_group_info_free(info)


# --- asynchronous produce ------------------------------------------------------------


_WAIT_SLICE_MS = 200  # waits are cut into slices so Ctrl-C stays responsive


class ProduceFuture:
    """The outcome of :meth:`Client.produce_async`: ``done()``, ``result(timeout)``
    (the base offset, None with acks 'none'), ``exception(timeout)``.

    Freeing it before completion is allowed: the produce still happens.
    """

    def __init__(self, handle: _ffi.Handle) -> None:
        self._handle = handle
        self._lock = threading.Lock()  # an rmq_pending is used by one thread at a time
        self._offset: Optional[int] = None
        self._error: Optional[Error] = None
        self._settled = False

    def _settle(self, code: int, offset: ctypes.c_int64) -> None:
        if code == 0:
            self._offset = None if offset.value < 0 else offset.value
        else:
            self._error = _error(code, _ffi.rmq_last_error().decode("utf-8", "replace"))
        self._settled = True
        handle, self._handle = self._handle, None
        _ffi.rmq_pending_free(handle)

    def _wait(self, timeout: Optional[float]) -> bool:
        """Waits up to `timeout` seconds (None: forever); True once settled."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._lock:
            offset = ctypes.c_int64(-1)
            while not self._settled:
                if deadline is None:
                    slice_ms = _WAIT_SLICE_MS
                else:
                    remaining = deadline - time.monotonic()
                    slice_ms = max(0, min(_WAIT_SLICE_MS, int(math.ceil(remaining * 1000))))
                code = _ffi.rmq_pending_wait(self._handle, slice_ms, ctypes.byref(offset))
                if code != Result.PENDING:
                    self._settle(code, offset)
                elif deadline is not None and time.monotonic() >= deadline:
                    return False
            return True

    def done(self) -> bool:
        """True once the produce completed (successfully or not)."""
        if self._settled:
            return True
        if not self._lock.acquire(blocking=False):
            return self._settled  # another thread is waiting on it
        try:
            if not self._settled:
                offset = ctypes.c_int64(-1)
                code = _ffi.rmq_pending_poll(self._handle, ctypes.byref(offset))
                if code != Result.PENDING:
                    self._settle(code, offset)
            return self._settled
        finally:
            self._lock.release()

    def result(self, timeout: Optional[float] = None) -> Optional[int]:
        """The base offset (None with acks 'none'); raises the produce's Error,
        or TimeoutError when it is not done after ``timeout`` seconds."""
        if not self._wait(timeout):
            raise TimeoutError("the produce is not done after %s s" % timeout)
        if self._error is not None:
            raise self._error
        return self._offset

    def exception(self, timeout: Optional[float] = None) -> Optional[Error]:
        """The produce's Error, or None when it succeeded."""
        if not self._wait(timeout):
            raise TimeoutError("the produce is not done after %s s" % timeout)
        return self._error

    def cancel(self) -> bool:
        return False  # a queued produce cannot be withdrawn

    def cancelled(self) -> bool:
        return False

    def __del__(self) -> None:
        try:
            handle, self._handle = self._handle, None
            if handle is not None:
                _ffi.rmq_pending_free(handle)
        except Exception:
            pass

    def __repr__(self) -> str:
        if not self._settled:
            state = "pending"
        elif self._error is not None:
            state = "failed: %s" % self._error
        else:
            state = "offset %s" % self._offset
        return "<ringmq.ProduceFuture %s>" % state


# --- consumer ------------------------------------------------------------------------


_POLL_SLICE_MS = 1000


def _slice_ms(deadline: Optional[float]) -> int:
    """The next wait of a polling loop: one slice, or what is left until
    ``deadline`` (a ``time.monotonic()`` value; None: no deadline)."""
    if deadline is None:
        return _POLL_SLICE_MS
    remaining = deadline - time.monotonic()
    return max(0, min(_POLL_SLICE_MS, int(math.ceil(remaining * 1000))))


class _HandleOwner:
    """What the consumers share: a library handle freed by ``_free`` on close,
    on garbage collection, or at the end of a ``with`` block."""

    _handle: Optional[int] = None
    _broker: Optional[Broker]  # set by each subclass's __init__

    @staticmethod
    def _free(handle: _ffi.Handle) -> None:
        raise NotImplementedError

    if TYPE_CHECKING:

        def close(self) -> None:
            """Defined by each subclass."""

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _abandon(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self._free(handle)

    def __enter__(self: _HandleOwnerT) -> _HandleOwnerT:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._abandon()
        except Exception:
            pass


class Consumer(_HandleOwner):
    """Follows one partition (``client.consumer(...)``).

    Iterating yields :class:`Record` objects and stops after ``timeout``
    seconds without records (iterating again resumes where it stopped);
    :meth:`poll` returns a list. One thread at a time (calls are serialised).
    Close it, or use it as a context manager.
    """

    def __init__(self, handle: _ffi.Handle, topic: str, partition: int, timeout: Optional[float]) -> None:
        # Private: use Client.consumer().
        self._handle = handle
        self._lock = threading.Lock()
        self._buffer: Deque[Record] = collections.deque()
        self._broker: Optional[Broker] = None  # the embedded broker it reads from (kept alive)
        self.topic = topic
        self.partition = partition
        self.timeout = timeout

    @staticmethod
    def _free(handle: _ffi.Handle) -> None:
        _ffi.rmq_consumer_close(handle)

    @property
    def position(self) -> int:
        """The offset of the next record this consumer returns."""
        with self._lock:
            if self._buffer:
                return self._buffer[0].offset
            if self._handle is None:
                raise _closed("the consumer")
            return _ffi.rmq_consumer_position(self._handle)

    def _poll_once(self, wait_ms: int) -> List[Record]:
        out = _new_handle()
        _check(_ffi.rmq_consumer_poll(self._handle, wait_ms, ctypes.byref(out)))
        return _take_records(out.value, self.topic, self.partition)

    def poll(self, timeout: Optional[float] = 1.0) -> List[Record]:
        """The records available at the consumer's position, waiting up to
        ``timeout`` seconds (None: until some arrive) for at least one; maybe
        an empty list."""
        deadline = None if timeout is None else time.monotonic() + _milliseconds(timeout) / 1000.0
        with self._lock:
            if self._buffer:
                records = list(self._buffer)
                self._buffer.clear()
                return records
            while True:
                if self._handle is None:
                    raise _closed("the consumer")
                wait_ms = _slice_ms(deadline)
                records = self._poll_once(wait_ms)
                if records or (deadline is not None and time.monotonic() >= deadline):
                    return records

    def __iter__(self) -> "Consumer":
        return self

    def __next__(self) -> Record:
        if not self._buffer:
            records = self.poll(self.timeout)
            if not records:
                raise StopIteration
            with self._lock:
                self._buffer.extend(records)
        with self._lock:
            return self._buffer.popleft()

    def close(self) -> None:
        """Frees the consumer (waiting for a poll in progress). Idempotent."""
        with self._lock:
            handle, self._handle = self._handle, None
            self._buffer.clear()
        if handle is not None:
            _ffi.rmq_consumer_close(handle)
        broker, self._broker = self._broker, None
        if broker is not None:
            broker._consumers.discard(self)

    def __repr__(self) -> str:
        return "<ringmq.Consumer %s/%d%s>" % (self.topic, self.partition, " closed" if self.closed else "")


# --- consumer groups -------------------------------------------------------------------


class GroupConsumer(_HandleOwner):
    """A member of a consumer group (``client.group_consumer(...)``).

    :meth:`poll` joins the group on its first call, heartbeats, follows
    rebalances and returns :class:`Record` objects of the partitions the broker
    assigned to this member (``record.topic`` and ``record.partition`` tell
    where each comes from). Poll regularly: a member silent for its session
    timeout is removed, and a rebalance waits for every member to poll again,
    so give each member of one group its own thread.

    One thread at a time (calls are serialised). Close it, or use it as a
    context manager: closing commits (unless ``manual_commit``) and leaves the
    group, so the other members take its partitions over at once.
    """

    def __init__(self, handle: _ffi.Handle, group: str, topics: List[str]) -> None:
        # Private: use Client.group_consumer().
        self._handle = handle
        self._lock = threading.Lock()
        self._broker: Optional[Broker] = None  # the embedded broker it reads from (kept alive)
        self._generation = 0
        self._assignment_len = 0
        self.group = group
        self.topics = topics

    @property
    def generation(self) -> int:
        """The member's generation (0 before it joined), as of its last poll."""
        return self._generation

    @property
    def assignment_len(self) -> int:
        """How many partitions the member owns in its generation, as of its last poll."""
        return self._assignment_len

    def _refresh(self) -> None:
        self._generation = _ffi.rmq_group_consumer_generation(self._handle)
        self._assignment_len = _ffi.rmq_group_consumer_assignment_len(self._handle)

    def poll(self, timeout: Optional[float] = 1.0) -> List[Record]:
        """Records of this member's partitions, waiting up to ``timeout``
        seconds (None: until some arrive) when there are none; maybe an empty
        list. Each partition's position moves past the records returned."""
        deadline = None if timeout is None else time.monotonic() + _milliseconds(timeout) / 1000.0
        with self._lock:
            while True:
                if self._handle is None:
                    raise _closed("the group consumer")
                wait_ms = _slice_ms(deadline)
                out = _new_handle()
                try:
                    _check(_ffi.rmq_group_consumer_poll(self._handle, wait_ms, ctypes.byref(out)))
                finally:
                    self._refresh()
                records = _take_group_records(out.value)
                if records or (deadline is not None and time.monotonic() >= deadline):
                    return records

    def commit(self) -> None:
        """Commits the position of every partition the member owns: one past
        the last record :meth:`poll` returned from it."""
        with self._lock:
            if self._handle is None:
                raise _closed("the group consumer")
            _check(_ffi.rmq_group_consumer_commit(self._handle))

    def commit_offset(self, topic: _Text, partition: int, next_offset: int) -> None:
        """Commits ``next_offset`` (the next record to read) for one partition."""
        topic_name = _text(topic, "topic")
        partition = _integer(partition, "partition", 0, _U32_MAX)
        next_offset = _integer(next_offset, "next_offset", 0, _I64_MAX)
        with self._lock:
            if self._handle is None:
                raise _closed("the group consumer")
            _check(_ffi.rmq_group_consumer_commit_offset(self._handle, topic_name, partition, next_offset))

    def close(self) -> None:
        """Commits (unless ``manual_commit``) and leaves the group, then frees
        the consumer (waiting for a poll in progress). Raises the Error of a
        failed commit or leave, after freeing it all the same. Idempotent."""
        with self._lock:
            handle, self._handle = self._handle, None
        broker, self._broker = self._broker, None
        if broker is not None:
            broker._consumers.discard(self)
        if handle is not None:
            _check(_ffi.rmq_group_consumer_close(handle))

    @staticmethod
    def _free(handle: _ffi.Handle) -> None:
        _ffi.rmq_group_consumer_close(handle)

    def __exit__(self, exc_type: Optional[Type[BaseException]], *exc_info: object) -> None:
        try:
            self.close()
        except Error:
            if exc_type is None:
                raise  # else the exception that ended the block matters more

    def __repr__(self) -> str:
        return "<ringmq.GroupConsumer %s of %s%s>" % (
            self.group,
            ",".join(self.topics),
            " closed" if self.closed else "",
        )


# --- share groups ------------------------------------------------------------------------


class _ShareFetch:
    """The rmq_fetch a receive returned: acknowledging a record reads it, so it
    lives as long as any of its records (freed when the last one is)."""

    __slots__ = ("handle", "owner")

    def __init__(self, handle: _ffi.Handle, owner: object) -> None:
        self.handle = handle
        self.owner = owner  # the receiving consumer's token

    def __del__(self) -> None:
        try:
            handle, self.handle = self.handle, None
            if handle is not None:
                _ffi.rmq_fetch_free(handle)
        except Exception:
            pass


class ShareRecord:
    """A record received by a :class:`ShareConsumer`: the fields of
    :class:`Record` (bytes are copies) and ``delivery_count`` (1 on the first
    delivery). Acknowledge it through the consumer that received it."""

    __slots__ = (
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
        "topic",
        "partition",
        "delivery_count",
        "_fetch",
        "_index",
    )

    def __init__(
        self,
        offset: int,
        timestamp: int,
        key: Optional[bytes],
        value: Optional[bytes],
        headers: _HeadersOut,
        topic: str,
        partition: int,
        delivery_count: int,
        fetch: _ShareFetch,
        index: int,
    ) -> None:
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
        self.topic = topic
        self.partition = partition
        self.delivery_count = delivery_count
        self._fetch = fetch
        self._index = index

    @property
    def record(self) -> Record:
        """The same record as a :class:`Record`."""
        return Record(self.offset, self.timestamp, self.key, self.value, self.headers, self.topic, self.partition)

    def __repr__(self) -> str:
        return "ShareRecord(topic=%r, partition=%d, offset=%d, delivery_count=%d, key=%r, value=%r)" % (
            self.topic,
            self.partition,
            self.offset,
            self.delivery_count,
            self.key,
            self.value,
        )


class ShareConsumer(_HandleOwner):
    """A member of a share group reading one topic as a queue
    (``client.share_consumer(...)``).

    :meth:`receive` acquires records under this member's lease: the members of
    one group receive disjoint records. Acknowledge each one with
    :meth:`accept` (done), :meth:`release` (delivered again, to any member),
    :meth:`reject` (to the dead-letter topic) or :meth:`renew` (the lease
    starts over); a record not acknowledged before its lease expires is
    delivered again. A record keeps the library's buffer of its receive alive
    until it is garbage collected.

    One thread at a time (calls are serialised). Close it, or use it as a
    context manager; records it holds stay leased until their leases expire.
    """

    def __init__(self, handle: _ffi.Handle, group: str, topic: str) -> None:
        # Private: use Client.share_consumer().
        self._handle = handle
        self._lock = threading.Lock()
        self._broker: Optional[Broker] = None  # the embedded broker it reads from (kept alive)
        self._token = object()
        self.group = group
        self.topic = topic

    def receive(self, max_records: int = 100, timeout: Optional[float] = 1.0) -> List[ShareRecord]:
        """Acquires up to ``max_records`` records, waiting up to ``timeout``
        seconds (None: until some arrive) when none are available; maybe an
        empty list."""
        max_records = _integer(max_records, "max_records", 1, _U32_MAX)
        deadline = None if timeout is None else time.monotonic() + _milliseconds(timeout) / 1000.0
        with self._lock:
            while True:
                if self._handle is None:
                    raise _closed("the share consumer")
                wait_ms = _slice_ms(deadline)
                out = _new_handle()
                _check(_ffi.rmq_share_receive(self._handle, max_records, wait_ms, ctypes.byref(out)))
                fetch = _ShareFetch(out.value, self._token)  # frees it once unreferenced
                records = self._records_of(fetch)
                if records or (deadline is not None and time.monotonic() >= deadline):
                    return records

    @staticmethod
    def _records_of(fetch: _ShareFetch) -> List[ShareRecord]:
        raw = _ffi.RecordOut()
        header = _ffi.HeaderOut()
        origin = _Origins(fetch.handle)
        records: List[ShareRecord] = []
        for index in range(_ffi.rmq_fetch_count(fetch.handle)):
            topic, partition, deliveries = origin(index)
            offset, timestamp, key, value, headers = _copy_record(fetch.handle, index, raw, header)
            records.append(
                ShareRecord(offset, timestamp, key, value, headers, topic, partition, deliveries, fetch, index)
            )
        return records

    def acknowledge(self, record: ShareRecord, kind: _AckLike) -> None:
        """Acknowledges a record this consumer received: ``kind`` is 'accept',
        'release', 'reject' or 'renew' (or an :class:`Ack`). Raises
        :class:`InvalidStateError` when this member no longer holds it (its
        lease expired, or it was acknowledged already)."""
        kind = _ack(kind)
        if not isinstance(record, ShareRecord):
            raise TypeError("record must be a ShareRecord, not %s" % type(record).__name__)
        if record._fetch.owner is not self._token:
            raise _invalid("the record was received by another share consumer")
        with self._lock:
            if self._handle is None:
                raise _closed("the share consumer")
            _check(_ffi.rmq_share_acknowledge(self._handle, record._fetch.handle, record._index, kind))

    def acknowledge_all(self, records: Sequence[ShareRecord], kind: _AckLike = "accept") -> None:
        """Acknowledges many records the same way, one request per receive
        they came from (instead of one per record). Raises the error of the
        first record that was refused; the others are applied all the same."""
        kind = _ack(kind)
        by_fetch: collections.OrderedDict[int, Tuple[_ShareFetch, List[int]]] = collections.OrderedDict()
        for record in records:
            if not isinstance(record, ShareRecord):
                raise TypeError("records must be ShareRecords, not %s" % type(record).__name__)
            if record._fetch.owner is not self._token:
                raise _invalid("a record was received by another share consumer")
            by_fetch.setdefault(id(record._fetch), (record._fetch, []))[1].append(record._index)
        with self._lock:
            if self._handle is None:
                raise _closed("the share consumer")
            for fetch, indexes in by_fetch.values():
                array = (ctypes.c_size_t * len(indexes))(*indexes)
                _check(_ffi.rmq_share_acknowledge_many(self._handle, fetch.handle, array, len(indexes), kind, None))

    def accept(self, record: ShareRecord) -> None:
        """Done with the record: it is never delivered again."""
        self.acknowledge(record, Ack.ACCEPT)

    def release(self, record: ShareRecord) -> None:
        """Gives the record back: delivered again (or dead-lettered once it was
        delivered max_deliveries times)."""
        self.acknowledge(record, Ack.RELEASE)

    def reject(self, record: ShareRecord) -> None:
        """Poison: the record goes straight to the dead-letter topic."""
        self.acknowledge(record, Ack.REJECT)

    def renew(self, record: ShareRecord) -> None:
        """Keeps the record: its lease starts over."""
        self.acknowledge(record, Ack.RENEW)

    def close(self) -> None:
        """Frees the consumer (waiting for a call in progress); the records it
        holds stay leased until their leases expire. Idempotent."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            _ffi.rmq_share_consumer_close(handle)
        broker, self._broker = self._broker, None
        if broker is not None:
            broker._consumers.discard(self)

    @staticmethod
    def _free(handle: _ffi.Handle) -> None:
        _ffi.rmq_share_consumer_close(handle)

    def __repr__(self) -> str:
        return "<ringmq.ShareConsumer %s of %s%s>" % (self.group, self.topic, " closed" if self.closed else "")
