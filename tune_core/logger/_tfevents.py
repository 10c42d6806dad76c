"""TensorBoard event files without tensorboardX or protobuf: the few messages the
TensorBoard logger writes, encoded by hand, in TFRecord framing.

Importing tensorboardX costs a driver 0.13-0.15 s (it imports boto3 and its writers), in
the middle of a process's first ``fit()``, and building its protobuf messages costs more
per result than the bytes themselves. The messages here are small and fixed, so they are
encoded directly from the ``.proto`` definitions TensorBoard reads (field numbers in the
comments) and checked by the tests against tensorboardX's own protobuf classes.

Wire format (protobuf): each field is ``key = field_number << 3 | wire_type`` as a varint,
then a varint (type 0), 8 little-endian bytes (1), a varint length and the bytes (2) or 4
little-endian bytes (5). Proto3 leaves out scalar fields at their default, except members
of a ``oneof``. TFRecord: ``uint64 length``, ``uint32 masked_crc32c(length bytes)``, the
data, ``uint32 masked_crc32c(data)``, all little-endian.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Dict, Iterable, List, Optional, Tuple

__all__ = ["crc32c", "masked_crc32c", "record", "event", "scalars_summary",
           "hparams_summaries", "STRING", "BOOL", "FLOAT64"]

_pack_d = struct.Struct("<d").pack
_pack_f = struct.Struct("<f").pack
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack


# --- CRC-32C (Castagnoli), as TFRecord checksums use it --------------------------------------

_TABLE: List[int] = []


def _crc32c_python(data: bytes) -> int:
    if not _TABLE:
        for byte in range(256):
            crc = byte
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # reflected polynomial
            _TABLE.append(crc)
    table, crc = _TABLE, 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_first(data: bytes) -> int:
    """Picks the implementation at the first checksum (not at import: the C library's
    package takes a few milliseconds to import)."""
    global crc32c
    try:  # the C implementation (the `crc32c` package, in the `tensorboard` extra): 20x faster
        from crc32c import crc32c as native
    except ImportError:
        native = None
    crc32c = native if native is not None else _crc32c_python
    return crc32c(data)


crc32c = _crc32c_first


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord holding ``data``."""
    header = _pack_q(len(data))
    return header + _pack_i(masked_crc32c(header)) + data + _pack_i(masked_crc32c(data))


# --- protobuf encoding -------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    if value < 0:
        value &= 0xFFFFFFFFFFFFFFFF  # int64: ten bytes of two's complement
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str_field(field: int, text: str) -> bytes:
    return _bytes_field(field, text.encode("utf-8", "surrogatepass"))


def _double_field(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + _pack_d(value)


def _varint_field(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _float32(value: float) -> bytes:
    try:
        return _pack_f(value)
    except OverflowError:  # beyond float32: infinite, as protobuf stores it
        return _pack_f(math.copysign(math.inf, value))


# Event (tensorboard/compat/proto/event.proto): wall_time = 1 (double), step = 2 (int64),
# oneof what { file_version = 3 (string), summary = 5 (Summary),
# session_log = 7 (SessionLog: status = 1, START = 1) }.
def event(wall_time: float, step: Optional[int] = None, *, file_version: Optional[str] = None,
          summary: Optional[bytes] = None, session_start: bool = False) -> bytes:
    """An ``Event`` message: one of a file version, a summary or a session start."""
    out = _double_field(1, wall_time) if wall_time else b""
    if step:
        out += _varint_field(2, int(step))
    if file_version is not None:
        out += _str_field(3, file_version)
    elif summary is not None:
        out += _bytes_field(5, summary)
    elif session_start:
        out += _bytes_field(7, _varint_field(1, 1))
    return out


# Summary (summary.proto): repeated Value value = 1; Value: tag = 1 (string),
# oneof value { simple_value = 2 (float) }, metadata = 9 (SummaryMetadata:
# plugin_data = 1 (PluginData: plugin_name = 1, content = 2)).
_TAG_CACHE: Dict[str, bytes] = {}


def _tag(tag: str) -> bytes:
    encoded = _TAG_CACHE.get(tag)
    if encoded is None:
        if len(_TAG_CACHE) > 10_000:  # tags that never repeat: do not keep them all
            _TAG_CACHE.clear()
        encoded = _TAG_CACHE[tag] = _str_field(1, tag)
    return encoded


def scalars_summary(items: Iterable[Tuple[str, float]]) -> Optional[bytes]:
    """A ``Summary`` of (tag, value) scalars; None if there are none."""
    parts = []
    for tag, value in items:
        body = _tag(tag) + b"\x15" + _float32(value)  # 0x15: field 2, 32-bit
        parts.append(b"\x0a" + _varint(len(body)) + body)  # 0x0a: field 1, bytes
    return b"".join(parts) if parts else None


def _plugin_summary(tag: str, plugin_name: str, content: bytes) -> bytes:
    plugin_data = _str_field(1, plugin_name) + _bytes_field(2, content)
    metadata = _bytes_field(1, plugin_data)
    return _bytes_field(1, _str_field(1, tag) + _bytes_field(9, metadata))


# HParams (tensorboard/plugins/hparams/{api,plugin_data}.proto), DataType values:
STRING, BOOL, FLOAT64 = 1, 2, 3
_SUCCESS, _FAILURE = 1, 2  # Status


def _value(value: Any) -> bytes:
    """A ``google.protobuf.Value``: number_value = 2, string_value = 3, bool_value = 4."""
    if isinstance(value, bool):
        return _varint_field(4, int(value)) if value else b"\x20\x00"
    if isinstance(value, float):
        return _double_field(2, value)
    return _str_field(3, value)


def hparams_summaries(hparams: List[Tuple[str, Any, int]], metric_tags: List[str],
                      start_time: Optional[float], end_time: float,
                      failed: bool) -> List[bytes]:
    """The HParams plugin's experiment, session-start and session-end ``Summary``s.

    ``hparams`` are (name, value, DataType) with values already a bool, a float or a str.
    """
    # Experiment: hparam_infos = 4 (HParamInfo: name = 1, type = 4),
    # metric_infos = 5 (MetricInfo: name = 1 (MetricName: group = 1, tag = 2)).
    experiment = b"".join(_bytes_field(4, _str_field(1, name) + _varint_field(4, kind))
                          for name, _, kind in hparams)
    experiment += b"".join(_bytes_field(5, _bytes_field(1, _str_field(2, tag)))
                           for tag in metric_tags)
    # SessionStartInfo: map<string, Value> hparams = 1 (entries: key = 1, value = 2),
    # start_time_secs = 5.
    start = b"".join(_bytes_field(1, _str_field(1, name) + _bytes_field(2, _value(value)))
                     for name, value, _ in hparams)
    if start_time:
        start += _double_field(5, start_time)
    # SessionEndInfo: status = 1, end_time_secs = 2.
    end = _varint_field(1, _FAILURE if failed else _SUCCESS)
    if end_time:
        end += _double_field(2, end_time)
    # HParamsPluginData: version = 1 (0: left out), oneof data { experiment = 2,
    # session_start_info = 3, session_end_info = 4 }.
    return [_plugin_summary("_hparams_/experiment", "hparams", _bytes_field(2, experiment)),
            _plugin_summary("_hparams_/session_start_info", "hparams", _bytes_field(3, start)),
            _plugin_summary("_hparams_/session_end_info", "hparams", _bytes_field(4, end))]
