"""rosbag2 files (MCAP or sqlite3) of rclpy messages, written and read with the ``rosbags`` library.

Messages are serialized by rclpy (``rclpy.serialization``), so the bag holds exactly the CDR a ROS 2 recorder
would; rosbags only stores it. Each topic's connection carries the message definition and RIHS01 hash from
rosbags' typestore of the running distribution (``ROS_DISTRO``, Kilted when unset); types it lacks
(vision_msgs, ...) are registered from the ``.msg`` files of the installed interface packages (ament index).
Reading deserializes back into rclpy messages; a truncated or corrupt bag, or a missing topic, raises
:class:`BagError` naming the bag or the topic, after the messages that could be read.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Nodetype, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.rosbag2.storage_mcap import McapReader, read_sized
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

#: Storage plugins a bag can be written with.
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

_INFINITE = QosTime(sec=0, nsec=0)
_MCAP_MAGIC = b"\x89MCAP0\r\n"
#: Offered QoS of a latched topic (/tf_static): reliable, transient local, keep last 1, so ``ros2 bag play``
#: republishes it for late subscribers.
TRANSIENT_LOCAL = Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
                      durability=QosDurability.TRANSIENT_LOCAL, deadline=_INFINITE, lifespan=_INFINITE,
                      liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_INFINITE,
                      avoid_ros_namespace_conventions=False)

# ROS_DISTRO → rosbags typestore; unset or another distribution (rolling) gets Kilted's.
_STORES = {"humble": Stores.ROS2_HUMBLE, "iron": Stores.ROS2_IRON, "jazzy": Stores.ROS2_JAZZY,
           "kilted": Stores.ROS2_KILTED}


class BagError(RuntimeError):
    """A bag cannot be written or read; ``str(error)`` names the bag or topic and the reason."""


def msgtype_of(msg: object) -> str:
    """``pkg/msg/Name`` of an rclpy message instance or class."""
    cls = msg if isinstance(msg, type) else type(msg)
    package = cls.__module__.split(".")[0]
    return f"{package}/msg/{cls.__name__}"


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name`` (``pkg/Name`` accepted), imported from the installed package."""
    package, _, name = msgtype.replace("/msg/", "/").partition("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype} is not importable ({exc}): install or source its interface "
                       "package") from None


def _share_msg_file(msgtype: str) -> Path:
    """The installed ``.msg`` definition of ``pkg/msg/Name`` from the ament index."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    package, _, name = msgtype.partition("/msg/")
    try:
        path = Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"
    except PackageNotFoundError:
        raise BagError(f"message type {msgtype}: rosbags' typestore lacks it and package {package} is not in the "
                       f"ament index (AMENT_PREFIX_PATH={os.environ.get('AMENT_PREFIX_PATH', '')!r})") from None
    if not path.is_file():
        raise BagError(f"message type {msgtype}: no definition {path}")
    return path


def _referenced_types(fields: list) -> Iterator[str]:
    """Message types named by rosbags field definitions (plain, array and sequence fields)."""
    for _, (node_type, spec) in fields:
        if node_type == Nodetype.NAME:
            yield spec
        elif node_type in (Nodetype.ARRAY, Nodetype.SEQUENCE) and spec[0][0] == Nodetype.NAME:
            yield spec[0][1]


def _register(store: Typestore, msgtype: str) -> None:
    """Add ``msgtype`` and the types it uses that ``store`` lacks, from the installed ``.msg`` files."""
    if msgtype in store.fielddefs:
        return
    types = get_types_from_msg(_share_msg_file(msgtype).read_text(), msgtype)
    for _, fields in types.values():
        for used in _referenced_types(fields):
            _register(store, used)
    store.register(types)


@lru_cache(maxsize=None)
def typestore() -> Typestore:
    """rosbags' typestore of the running distribution (``ROS_DISTRO``; Kilted when unset), extended on demand."""
    return get_typestore(_STORES.get(os.environ.get("ROS_DISTRO", "").lower(), Stores.ROS2_KILTED))


def msgdef_and_hash(msgtype: str) -> tuple[str, str]:
    """(message definition text, RIHS01 hash) of ``msgtype``, registering it from its ``.msg`` file if needed."""
    store = typestore()
    _register(store, msgtype)
    msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
    return msgdef, store.hash_rihs01(msgtype)


class BagWriter:
    """A new rosbag2 (``storage`` mcap or sqlite3) that takes rclpy messages; use as a context manager.

    The bag is closed (metadata written) also when the ``with`` block raises, so what was written stays readable.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r} (accepted: {', '.join(STORAGES)})")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"bag {self.path} already exists (a bag is never overwritten: remove it first)")
        self.storage = storage
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        self._connections: dict[str, Any] = {}
        #: Messages written per topic.
        self.counts: dict[str, int] = {}
        #: Serialized bytes written.
        self.bytes_written = 0

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except (WriterError, OSError) as exc:
            raise BagError(f"cannot create bag {self.path}: {exc}") from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._writer.close()

    def write(self, topic: str, msg: object, stamp_ns: int, qos_override: Qos | None = None) -> None:
        """Append ``msg`` on ``topic`` with receive time ``stamp_ns``; ``qos_override`` is the offered QoS the topic
        is recorded with (e.g. :data:`TRANSIENT_LOCAL`), fixed by the topic's first message."""
        connection = self._connections.get(topic)
        msgtype = msgtype_of(msg)
        if connection is None:
            msgdef, digest = msgdef_and_hash(msgtype)
            connection = self._writer.add_connection(
                topic, msgtype, msgdef=msgdef, rihs01=digest,
                offered_qos_profiles=[qos_override] if qos_override is not None else [])
            self._connections[topic] = connection
            self.counts[topic] = 0
        elif connection.msgtype != msgtype:
            raise BagError(f"bag {self.path}: topic {topic} holds {connection.msgtype}, cannot write a {msgtype}")
        data = serialize_message(msg)
        self._writer.write(connection, int(stamp_ns), data)
        self.counts[topic] += 1
        self.bytes_written += len(data)


@dataclass(frozen=True)
class BagTopic:
    """One topic of a bag: its type, message count and the QoS profiles it was recorded with."""

    msgtype: str
    count: int
    offered_qos: tuple[Qos, ...]


def _open_reader(path: Path) -> Reader:
    """An opened rosbags Reader of ``path`` (bag folder or storage file), or BagError naming the bag."""
    try:
        reader = Reader(path)
        reader.open()
    except FileNotFoundError as exc:
        raise BagError(f"cannot read bag {path}: {exc}") from None
    except (ReaderError, OSError, sqlite3.DatabaseError, ValueError, KeyError) as exc:
        raise BagError(f"cannot read bag {path}: it is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    return reader


def bag_topics(path: str | Path) -> dict[str, BagTopic]:
    """Every topic of the bag at ``path`` with its type, message count and recorded QoS."""
    path = Path(path)
    reader = _open_reader(path)
    try:
        topics: dict[str, BagTopic] = {}
        for conn in reader.connections:
            previous = topics.get(conn.topic)
            qos = tuple(getattr(conn.ext, "offered_qos_profiles", ()))
            count = conn.msgcount + (previous.count if previous else 0)
            topics[conn.topic] = BagTopic(conn.msgtype, count, previous.offered_qos if previous else qos)
        return topics
    finally:
        reader.close()


def _mcap_files(path: Path) -> list[Path]:
    """The MCAP storage files of a bag folder, or the file itself when ``path`` is one."""
    if path.is_dir():
        return sorted(path.glob("*.mcap"))
    return [path] if path.suffix == ".mcap" and path.is_file() else []


def _salvaged_mcap(path: Path) -> McapReader:
    """An MCAP reader of a file that was cut short, its schemas and channels scanned record by record up to the cut.

    rosbags needs an MCAP's footer to open it; a file whose writer was killed has none, but every complete
    record before the cut is still readable with ``messages_scan``, which raises ReaderError at the cut.
    The caller closes ``reader.bio``.
    """
    reader = McapReader(path)
    reader.bio = path.open("rb")
    if reader.bio.read(8) != _MCAP_MAGIC or reader.bio.read(1) != b"\x01":
        reader.bio.close()
        raise ReaderError("not an MCAP file (no magic and header record)")
    read_sized(reader.bio)
    reader.data_start = reader.bio.tell()
    reader.data_end = path.stat().st_size
    try:
        reader.meta_scan()  # collects schemas and channels until the cut
    except ReaderError:
        pass
    return reader


def read_messages(path: str | Path, topics: Collection[str] | None = None) -> Iterator[tuple[str, int, Any]]:
    """(topic, receive time ns, rclpy message) of every message of ``topics`` (None: all) in time order.

    A requested topic the bag lacks raises BagError naming it before anything is read; a bag that turns out
    truncated or corrupt raises BagError naming it after the messages read up to there. An MCAP file cut short
    (no footer, e.g. a killed recorder) is read up to the cut, in the order it was written.
    """
    path = Path(path)
    truncated = ""
    reader: Reader | None = None
    salvaged: McapReader | None = None
    try:
        reader = _open_reader(path)
        connections, close = reader.connections, reader.close
    except BagError as exc:
        files = _mcap_files(path)
        if len(files) != 1:
            raise
        try:
            salvaged = _salvaged_mcap(files[0])
        except (ReaderError, OSError):
            raise exc from None
        connections, close, truncated = list(salvaged.connections), salvaged.bio.close, str(exc)
    try:
        if topics is not None:
            present = {conn.topic for conn in connections}
            missing = sorted(set(topics) - present)
            if missing:
                raise BagError(f"bag {path} has no topic {', '.join(missing)} (topics: {', '.join(sorted(present))})")
            connections = [conn for conn in connections if conn.topic in topics]
        if not connections:
            return
        classes = {conn.id: message_class(conn.msgtype) for conn in connections}
        source = salvaged.messages_scan(connections) if truncated else reader.messages(connections=connections)
        try:
            for conn, stamp_ns, raw in source:
                yield conn.topic, stamp_ns, deserialize_message(bytes(raw), classes[conn.id])
        except (ReaderError, OSError, sqlite3.DatabaseError, EOFError, ValueError, KeyError, IndexError,
                TypeError) as exc:
            raise BagError(f"bag {path} is truncated or corrupt: reading stopped ({type(exc).__name__}: {exc})") \
                from None
        if truncated:
            raise BagError(f"{truncated}; read what was there up to the cut")
    finally:
        close()
