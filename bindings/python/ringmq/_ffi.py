"""Loading libringmq and declaring its C ABI (include/ringmq.h) for ctypes.

Nothing here is public: use the classes of the ``ringmq`` package.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Tuple

if TYPE_CHECKING:
    from ctypes import Array, _CArgObject, _CDataType, _NamedFuncPointer, _Pointer

    # How ctypes passes the C types at the boundary:
    #: an opaque handle (c_void_p): its address, None for NULL.
    Handle = Optional[int]
    #: a pointer to an out-parameter, or to one input structure: ctypes.byref(...).
    Ref = _CArgObject

__all__ = ["lib", "library_path", "find_library", "LIBRARY_ENV"]

LIBRARY_ENV = "RINGMQ_LIB"

if sys.platform == "darwin":
    _FILE_NAME = "libringmq.dylib"
elif sys.platform == "win32":
    _FILE_NAME = "ringmq.dll"
else:
    _FILE_NAME = "libringmq.so"


def _repository_candidates(start: str) -> Iterator[str]:
    """target/release and target/debug libraries of every enclosing Cargo project."""
    directory = os.path.dirname(os.path.abspath(start))
    while True:
        if os.path.isfile(os.path.join(directory, "Cargo.toml")) and os.path.isdir(
            os.path.join(directory, "target")
        ):
            for profile in ("release", "debug"):
                yield os.path.join(directory, "target", profile, _FILE_NAME)
        parent = os.path.dirname(directory)
        if parent == directory:
            return
        directory = parent


def find_library() -> Tuple[Optional[str], List[str]]:
    """(path or name to load, every place searched), without loading anything.

    Order: $RINGMQ_LIB; the library bundled in this package (an installed
    wheel); target/release then target/debug of the Cargo project enclosing
    this package (a development install or a run from the repository);
    ctypes.util.find_library("ringmq") (the system's search path).
    """
    searched: List[str] = []
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        return explicit, [explicit]
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), _FILE_NAME)
    searched.append(bundled)
    if os.path.isfile(bundled):
        return bundled, searched
    for candidate in _repository_candidates(__file__):
        searched.append(candidate)
        if os.path.isfile(candidate):
            return candidate, searched
    searched.append('ctypes.util.find_library("ringmq")')
    found = ctypes.util.find_library("ringmq")
    if found:
        return found, searched
    return None, searched


def _load() -> Tuple[ctypes.CDLL, str]:
    path, searched = find_library()
    if path is None:
        raise ImportError(
            "ringmq: cannot find the libringmq shared library. Build it with "
            "`cargo build --release` and set %s=/path/to/%s (searched: %s)"
            % (LIBRARY_ENV, _FILE_NAME, ", ".join(searched))
        )
    try:
        # CDLL (not PyDLL): every call releases the GIL, so blocking calls
        # (produce with acks, fetch waits, close) let other Python threads run.
        return ctypes.CDLL(path), path
    except OSError as error:
        origin = (" (from %s)" % LIBRARY_ENV) if os.environ.get(LIBRARY_ENV) else ""
        raise ImportError(
            "ringmq: cannot load %s%s: %s. Set %s to the path of a built %s"
            % (path, origin, error, LIBRARY_ENV, _FILE_NAME)
        ) from error


lib, library_path = _load()

# --- types of include/ringmq.h ------------------------------------------------

c_result = ctypes.c_int  # rmq_result
c_acks = ctypes.c_int  # rmq_acks
c_handle = ctypes.c_void_p  # every opaque handle
c_handle_p = ctypes.POINTER(ctypes.c_void_p)
c_int64_p = ctypes.POINTER(ctypes.c_int64)
c_uint32_p = ctypes.POINTER(ctypes.c_uint32)


class BrokerOptions(ctypes.Structure):
    """rmq_broker_options"""

    _fields_ = [
        ("shards", ctypes.c_uint16),
        ("busy_poll", ctypes.c_uint8),
        ("flush_interval_ms", ctypes.c_uint64),
        ("segment_bytes", ctypes.c_uint64),
    ]

    if TYPE_CHECKING:  # the Python values ctypes reads and writes
        shards: int
        busy_poll: int
        flush_interval_ms: int
        segment_bytes: int


class HeaderIn(ctypes.Structure):
    """rmq_header as passed in: c_char_p fields keep the bytes objects alive
    (in the structure's _objects) and point at their buffers without copying;
    b"" is a non-NULL pointer (empty), None is NULL (null)."""

    _fields_ = [
        ("key", ctypes.c_char_p),
        ("key_len", ctypes.c_size_t),
        ("value", ctypes.c_char_p),
        ("value_len", ctypes.c_size_t),
    ]

    if TYPE_CHECKING:  # the Python values ctypes reads and writes
        key: Optional[bytes]
        key_len: int
        value: Optional[bytes]
        value_len: int


class HeaderOut(ctypes.Structure):
    """rmq_header as received: raw pointers borrowed from an rmq_fetch."""

    _fields_ = [
        ("key", ctypes.c_void_p),
        ("key_len", ctypes.c_size_t),
        ("value", ctypes.c_void_p),
        ("value_len", ctypes.c_size_t),
    ]

    if TYPE_CHECKING:  # the Python values ctypes reads and writes
        key: Optional[int]
        key_len: int
        value: Optional[int]
        value_len: int


class RecordIn(ctypes.Structure):
    """rmq_record_in"""

    _fields_ = [
        ("key", ctypes.c_char_p),
        ("key_len", ctypes.c_size_t),
        ("value", ctypes.c_char_p),
        ("value_len", ctypes.c_size_t),
        ("headers", ctypes.POINTER(HeaderIn)),
        ("headers_len", ctypes.c_size_t),
        ("timestamp_ms", ctypes.c_int64),
    ]

    if TYPE_CHECKING:  # the Python values ctypes reads and writes
        key: Optional[bytes]
        key_len: int
        value: Optional[bytes]
        value_len: int
        headers: _Pointer[HeaderIn]
        headers_len: int
        timestamp_ms: int


class RecordOut(ctypes.Structure):
    """rmq_record"""

    _fields_ = [
        ("offset", ctypes.c_uint64),
        ("timestamp_ms", ctypes.c_int64),
        ("key", ctypes.c_void_p),
        ("key_len", ctypes.c_size_t),
        ("value", ctypes.c_void_p),
        ("value_len", ctypes.c_size_t),
        ("headers_len", ctypes.c_size_t),
    ]

    if TYPE_CHECKING:  # the Python values ctypes reads and writes
        offset: int
        timestamp_ms: int
        key: Optional[int]
        key_len: int
        value: Optional[int]
        value_len: int
        headers_len: int


# rmq_completion_callback, for reference. The binding never passes one: it polls
# rmq_pending handles instead, so no Python code ever runs on the library's
# worker thread (which would need the GIL, and could be killed by an
# interpreter shutting down while inside Rust frames).
CompletionCallback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, c_result, ctypes.c_int64, ctypes.c_char_p)


def _declare(name: str, restype: Optional[type[_CDataType]], *argtypes: type[_CDataType]) -> _NamedFuncPointer:
    # Each result is assigned to a name annotated with the Python signature
    # ctypes gives the C one (argtypes in, restype out): see Handle and Ref.
    try:
        function: _NamedFuncPointer = getattr(lib, name)
    except AttributeError:
        raise ImportError(
            "ringmq: %s has no %s: it is older than this binding. Rebuild it (cargo build "
            "--release), or set %s to the path of a current %s" % (library_path, name, LIBRARY_ENV, _FILE_NAME)
        ) from None
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


# Both return NUL-terminated strings that are never NULL (include/ringmq.h).
rmq_last_error: Callable[[], bytes] = _declare("rmq_last_error", ctypes.c_char_p)
rmq_version: Callable[[], bytes] = _declare("rmq_version", ctypes.c_char_p)

rmq_broker_open: Callable[[bytes, Ref, Ref], int] = _declare(
    "rmq_broker_open", c_result, ctypes.c_char_p, ctypes.POINTER(BrokerOptions), c_handle_p
)
rmq_broker_close: Callable[[Handle], int] = _declare("rmq_broker_close", c_result, c_handle)

rmq_client_open_embedded: Callable[[Handle, Ref], int] = _declare("rmq_client_open_embedded", c_result, c_handle, c_handle_p)
rmq_client_connect: Callable[[bytes, Ref], int] = _declare("rmq_client_connect", c_result, ctypes.c_char_p, c_handle_p)
rmq_client_connect_auth: Callable[[bytes, bytes, bytes, bytes, Ref], int] = _declare(
    "rmq_client_connect_auth", c_result, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, c_handle_p
)
rmq_client_connect_tls: Callable[
    [bytes, Optional[bytes], Optional[bytes], Optional[bytes], Optional[bytes], Optional[bytes], Optional[bytes], Ref],
    int,
] = _declare(
    "rmq_client_connect_tls", c_result, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
    ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, c_handle_p
)
rmq_client_close: Callable[[Handle], None] = _declare("rmq_client_close", None, c_handle)

rmq_topic_create: Callable[[Handle, bytes, int, int, int], int] = _declare(
    "rmq_topic_create", c_result, c_handle, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_int64, ctypes.c_int64
)
rmq_topic_delete: Callable[[Handle, bytes], int] = _declare("rmq_topic_delete", c_result, c_handle, ctypes.c_char_p)
rmq_topics: Callable[[Handle, Ref], int] = _declare("rmq_topics", c_result, c_handle, c_handle_p)
rmq_topic_list_len: Callable[[Handle], int] = _declare("rmq_topic_list_len", ctypes.c_size_t, c_handle)
rmq_topic_list_get: Callable[[Handle, int, Ref, Ref], int] = _declare(
    "rmq_topic_list_get",
    c_result,
    c_handle,
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_char_p),
    c_uint32_p,
)
rmq_topic_list_free: Callable[[Handle], None] = _declare("rmq_topic_list_free", None, c_handle)

rmq_partition_offsets: Callable[[Handle, bytes, int, Ref, Ref, Ref], int] = _declare(
    "rmq_partition_offsets",
    c_result,
    c_handle,
    ctypes.c_char_p,
    ctypes.c_uint32,
    c_int64_p,
    c_int64_p,
    c_int64_p,
)
rmq_offset_for_timestamp: Callable[[Handle, bytes, int, int, Ref], int] = _declare(
    "rmq_offset_for_timestamp", c_result, c_handle, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_int64, c_int64_p
)

rmq_produce: Callable[[Handle, bytes, int, Array[RecordIn], int, int, Ref], int] = _declare(
    "rmq_produce",
    c_result,
    c_handle,
    ctypes.c_char_p,
    ctypes.c_int32,
    ctypes.POINTER(RecordIn),
    ctypes.c_size_t,
    c_acks,
    c_int64_p,
)
rmq_produce_async: Callable[[Handle, bytes, int, Array[RecordIn], int, int, None, Optional[int], Ref], int] = _declare(
    "rmq_produce_async",
    c_result,
    c_handle,
    ctypes.c_char_p,
    ctypes.c_int32,
    ctypes.POINTER(RecordIn),
    ctypes.c_size_t,
    c_acks,
    ctypes.c_void_p,  # rmq_completion_callback: always NULL here (see CompletionCallback)
    ctypes.c_void_p,
    c_handle_p,
)
rmq_pending_poll: Callable[[Handle, Ref], int] = _declare("rmq_pending_poll", c_result, c_handle, c_int64_p)
rmq_pending_wait: Callable[[Handle, int, Ref], int] = _declare("rmq_pending_wait", c_result, c_handle, ctypes.c_int64, c_int64_p)
rmq_pending_free: Callable[[Handle], None] = _declare("rmq_pending_free", None, c_handle)

rmq_fetch_records: Callable[[Handle, bytes, int, int, int, Ref], int] = _declare(
    "rmq_fetch_records",
    c_result,
    c_handle,
    ctypes.c_char_p,
    ctypes.c_uint32,
    ctypes.c_uint64,
    ctypes.c_uint32,
    c_handle_p,
)
rmq_fetch_count: Callable[[Handle], int] = _declare("rmq_fetch_count", ctypes.c_size_t, c_handle)
rmq_fetch_record: Callable[[Handle, int, Ref], int] = _declare("rmq_fetch_record", c_result, c_handle, ctypes.c_size_t, ctypes.POINTER(RecordOut))
rmq_fetch_record_header: Callable[[Handle, int, int, Ref], int] = _declare(
    "rmq_fetch_record_header", c_result, c_handle, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(HeaderOut)
)
rmq_fetch_free: Callable[[Handle], None] = _declare("rmq_fetch_free", None, c_handle)

rmq_consumer_open: Callable[[Handle, bytes, int, int, Ref], int] = _declare(
    "rmq_consumer_open", c_result, c_handle, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_int64, c_handle_p
)
rmq_consumer_poll: Callable[[Handle, int, Ref], int] = _declare("rmq_consumer_poll", c_result, c_handle, ctypes.c_uint32, c_handle_p)
rmq_consumer_position: Callable[[Handle], int] = _declare("rmq_consumer_position", ctypes.c_uint64, c_handle)
rmq_consumer_close: Callable[[Handle], None] = _declare("rmq_consumer_close", None, c_handle)

# --- consumer groups, share groups, group descriptions ---------------------------------


class GroupOptions(ctypes.Structure):
    """rmq_group_options (zero fields take the defaults)"""

    _fields_ = [
        ("session_timeout_ms", ctypes.c_uint32),
        ("rebalance_timeout_ms", ctypes.c_uint32),
        ("heartbeat_interval_ms", ctypes.c_uint32),
        ("offset_reset_latest", ctypes.c_uint32),
        ("manual_commit", ctypes.c_uint32),
    ]

    if TYPE_CHECKING:  # the Python values ctypes reads and writes
        session_timeout_ms: int
        rebalance_timeout_ms: int
        heartbeat_interval_ms: int
        offset_reset_latest: int
        manual_commit: int


class ShareOptions(ctypes.Structure):
    """rmq_share_options (zero/NULL fields take the defaults)"""

    _fields_ = [
        ("lease_ms", ctypes.c_uint32),
        ("max_deliveries", ctypes.c_uint16),
        ("dead_letter_topic", ctypes.c_char_p),
    ]

    if TYPE_CHECKING:  # the Python values ctypes reads and writes
        lease_ms: int
        max_deliveries: int
        dead_letter_topic: Optional[bytes]


class GroupPartition(ctypes.Structure):
    """rmq_group_partition: `topic` borrows from the rmq_group_info."""

    _fields_ = [
        ("topic", ctypes.c_void_p),
        ("topic_len", ctypes.c_size_t),
        ("partition", ctypes.c_uint32),
        ("committed", ctypes.c_int64),
        ("end", ctypes.c_int64),
        ("lag", ctypes.c_int64),
        ("available", ctypes.c_uint64),
        ("acquired", ctypes.c_uint64),
        ("archived", ctypes.c_uint64),
    ]

    if TYPE_CHECKING:  # the Python values ctypes reads and writes
        topic: Optional[int]
        topic_len: int
        partition: int
        committed: int
        end: int
        lag: int
        available: int
        acquired: int
        archived: int


rmq_group_consumer_open: Callable[[Handle, bytes, Array[ctypes.c_char_p], int, Ref, Ref], int] = _declare(
    "rmq_group_consumer_open",
    c_result,
    c_handle,
    ctypes.c_char_p,
    ctypes.POINTER(ctypes.c_char_p),
    ctypes.c_size_t,
    ctypes.POINTER(GroupOptions),
    c_handle_p,
)
rmq_group_consumer_poll: Callable[[Handle, int, Ref], int] = _declare("rmq_group_consumer_poll", c_result, c_handle, ctypes.c_uint32, c_handle_p)
rmq_group_consumer_commit: Callable[[Handle], int] = _declare("rmq_group_consumer_commit", c_result, c_handle)
rmq_group_consumer_commit_offset: Callable[[Handle, bytes, int, int], int] = _declare(
    "rmq_group_consumer_commit_offset", c_result, c_handle, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint64
)
rmq_group_consumer_generation: Callable[[Handle], int] = _declare("rmq_group_consumer_generation", ctypes.c_uint32, c_handle)
rmq_group_consumer_assignment_len: Callable[[Handle], int] = _declare("rmq_group_consumer_assignment_len", ctypes.c_size_t, c_handle)
rmq_group_consumer_close: Callable[[Handle], int] = _declare("rmq_group_consumer_close", c_result, c_handle)

rmq_fetch_record_origin: Callable[[Handle, int, Ref, Ref, Ref, Ref], int] = _declare(
    "rmq_fetch_record_origin",
    c_result,
    c_handle,
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_size_t),
    c_uint32_p,
    ctypes.POINTER(ctypes.c_uint16),
)

rmq_share_consumer_open: Callable[[Handle, bytes, bytes, Ref, Ref], int] = _declare(
    "rmq_share_consumer_open",
    c_result,
    c_handle,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.POINTER(ShareOptions),
    c_handle_p,
)
rmq_share_receive: Callable[[Handle, int, int, Ref], int] = _declare(
    "rmq_share_receive", c_result, c_handle, ctypes.c_uint32, ctypes.c_uint32, c_handle_p
)
rmq_share_acknowledge: Callable[[Handle, Handle, int, int], int] = _declare(
    "rmq_share_acknowledge", c_result, c_handle, c_handle, ctypes.c_size_t, ctypes.c_uint32
)
rmq_share_acknowledge_many: Callable[[Handle, Handle, Array[ctypes.c_size_t], int, int, Optional[Array[ctypes.c_int]]], int] = _declare(
    "rmq_share_acknowledge_many",
    c_result,
    c_handle,
    c_handle,
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.c_size_t,
    ctypes.c_uint32,
    ctypes.POINTER(c_result),
)
rmq_share_consumer_close: Callable[[Handle], None] = _declare("rmq_share_consumer_close", None, c_handle)

rmq_group_describe: Callable[[Handle, bytes, Ref], int] = _declare("rmq_group_describe", c_result, c_handle, ctypes.c_char_p, c_handle_p)
rmq_group_info_summary: Callable[[Handle, Ref, Ref, Ref, Ref], int] = _declare(
    "rmq_group_info_summary",
    c_result,
    c_handle,
    c_uint32_p,
    c_uint32_p,
    c_uint32_p,
    ctypes.POINTER(ctypes.c_size_t),
)
rmq_group_info_partitions: Callable[[Handle], int] = _declare("rmq_group_info_partitions", ctypes.c_size_t, c_handle)
rmq_group_info_partition: Callable[[Handle, int, Ref], int] = _declare(
    "rmq_group_info_partition", c_result, c_handle, ctypes.c_size_t, ctypes.POINTER(GroupPartition)
)
rmq_group_info_free: Callable[[Handle], None] = _declare("rmq_group_info_free", None, c_handle)
