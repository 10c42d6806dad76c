"""The hand-written event encoding, decoded with the protobuf classes tensorboardX ships
(what TensorBoard's reader parses), on the values that are easy to get wrong."""

from __future__ import annotations

import math

import pytest

from tune_core.logger import _tfevents

pytest.importorskip("tensorboardX")

from tensorboardX.proto.api_pb2 import DataType, Experiment, Status  # noqa: E402
from tensorboardX.proto.event_pb2 import Event, SessionLog  # noqa: E402
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData  # noqa: E402
from tensorboardX.proto.summary_pb2 import Summary  # noqa: E402


def test_crc32c_matches_the_standard_check_value_with_and_without_the_c_library():
    # CRC-32C of b"123456789" is 0xE3069283 (RFC 3720, the Castagnoli check value).
    assert _tfevents._crc32c_python(b"123456789") == 0xE3069283
    assert _tfevents.crc32c(b"123456789") == 0xE3069283
    data = bytes(range(256)) * 3
    assert _tfevents._crc32c_python(data) == _tfevents.crc32c(data)


def test_a_record_frames_its_data_with_tensorflows_masked_checksums():
    from tensorboardX.record_writer import masked_crc32c

    data = b"some event bytes"
    rec = _tfevents.record(data)
    assert len(rec) == 8 + 4 + len(data) + 4
    assert int.from_bytes(rec[:8], "little") == len(data)
    assert int.from_bytes(rec[8:12], "little") == masked_crc32c(rec[:8])
    assert rec[12:-4] == data
    assert int.from_bytes(rec[-4:], "little") == masked_crc32c(data)


@pytest.mark.parametrize("step", [None, 0, 1, 127, 128, 300, 2 ** 40, -5])
def test_scalar_events_decode_to_their_tags_values_and_steps(step):
    items = [("loss", 0.25), ("acc", 0.0), ("eval/ünï", -3.5), ("big", 1e40),
             ("nan", math.nan), ("inf", -math.inf)]
    ev = Event.FromString(_tfevents.event(1764000000.123, step,
                                          summary=_tfevents.scalars_summary(items)))
    assert ev.wall_time == 1764000000.123
    assert ev.step == (step or 0)
    got = {v.tag: v.simple_value for v in ev.summary.value}
    assert list(got) == [tag for tag, _ in items]
    assert got["loss"] == 0.25 and got["acc"] == 0.0 and got["eval/ünï"] == -3.5
    assert got["big"] == math.inf  # beyond float32, as protobuf stores it
    assert math.isnan(got["nan"]) and got["inf"] == -math.inf
    assert all(v.WhichOneof("value") == "simple_value" for v in ev.summary.value)


def test_no_scalars_is_no_summary():
    assert _tfevents.scalars_summary([]) is None


def test_file_version_and_restart_marker_events():
    ev = Event.FromString(_tfevents.event(12.5, file_version="brain.Event:2"))
    assert ev.file_version == "brain.Event:2" and ev.wall_time == 12.5
    ev = Event.FromString(_tfevents.event(13.0, 8, session_start=True))
    assert ev.step == 8 and ev.WhichOneof("what") == "session_log"
    assert ev.session_log.status == SessionLog.START


@pytest.mark.parametrize("failed", [False, True])
def test_hparams_summaries_decode_to_the_plugins_messages(failed):
    hparams = [("lr", 0.0, _tfevents.FLOAT64), ("opt", "", _tfevents.STRING),
               ("use_bn", False, _tfevents.BOOL), ("net/width", 64.0, _tfevents.FLOAT64),
               ("name", "résumé", _tfevents.STRING), ("flag", True, _tfevents.BOOL)]
    summaries = _tfevents.hparams_summaries(hparams, ["acc", "loss"], 100.5, 200.25, failed)
    decoded = [Summary.FromString(s).value[0] for s in summaries]
    assert [v.tag for v in decoded] == ["_hparams_/experiment", "_hparams_/session_start_info",
                                        "_hparams_/session_end_info"]
    assert all(v.metadata.plugin_data.plugin_name == "hparams" for v in decoded)
    data = [HParamsPluginData.FromString(v.metadata.plugin_data.content) for v in decoded]
    assert data[0].version == 0 and data[0].WhichOneof("data") == "experiment"

    experiment: Experiment = data[0].experiment
    assert [(h.name, h.type) for h in experiment.hparam_infos] == [
        ("lr", DataType.DATA_TYPE_FLOAT64), ("opt", DataType.DATA_TYPE_STRING),
        ("use_bn", DataType.DATA_TYPE_BOOL), ("net/width", DataType.DATA_TYPE_FLOAT64),
        ("name", DataType.DATA_TYPE_STRING), ("flag", DataType.DATA_TYPE_BOOL)]
    assert [m.name.tag for m in experiment.metric_infos] == ["acc", "loss"]

    start = data[1].session_start_info
    assert start.start_time_secs == 100.5
    assert {k: v.WhichOneof("kind") for k, v in start.hparams.items()} == {
        "lr": "number_value", "opt": "string_value", "use_bn": "bool_value",
        "net/width": "number_value", "name": "string_value", "flag": "bool_value"}
    assert start.hparams["lr"].number_value == 0.0
    assert start.hparams["opt"].string_value == ""
    assert start.hparams["use_bn"].bool_value is False
    assert start.hparams["net/width"].number_value == 64.0
    assert start.hparams["name"].string_value == "résumé"
    assert start.hparams["flag"].bool_value is True

    end = data[2].session_end_info
    assert end.status == (Status.STATUS_FAILURE if failed else Status.STATUS_SUCCESS)
    assert end.end_time_secs == 200.25
