"""Unit tests for the wire layer: control and piece messages, names, bitfields, grants, records.

Pure functions over frames and dicts: no sockets, no processes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Reply, Request
from messages.errors import Code, ProtocolError, Refused, RemoteError, TorrentError
from messages.frames import peek_id
from messages.grants import GrantSigner
from messages.names import check_file_name, check_name
from messages.pieces import PieceReply, PieceRequest
from messages.records import (
    FileEntry,
    FileMeta,
    Grant,
    GroupEntry,
    Heartbeat,
    Holder,
    LeaveResult,
    Record,
)
from messages.schema import validate_args

TAG = P.CONTROL_TAG
HEX64 = "ab" * 32


def share_args(**over: Any) -> dict[str, Any]:
    args = {"group": "films", "file": "movie.mkv", "size": 40_000, "piece_size": 32_768, "root": HEX64}
    args.update(over)
    return args


def header_frames(header: Any, blob: bytes | None = None) -> list[bytes]:
    frames = [TAG, orjson.dumps(header)]
    if blob is not None:
        frames.append(blob)
    return frames


def request_frames(op: str, args: Any, blob: bytes | None = None, **extra: Any) -> list[bytes]:
    return header_frames({"id": 7, "op": op, "cid": "c1", "args": args, **extra}, blob)


@contextmanager
def expect_code(code: Code, kind: type[TorrentError] = ProtocolError) -> Iterator[None]:
    """An error of ``kind`` (malformed input, by default) with exactly this code must be raised."""
    with pytest.raises(kind) as info:
        yield
    assert info.value.code == code, f"got {info.value.code!r}: {info.value.message}"


# --- control requests: round trips ----------------------------------------------------------


def test_request_round_trip() -> None:
    req = Request(id=42, op=P.OP_LOGIN, args={"user": "alice", "password": "s3cret"}, cid="client-1")
    frames = req.encode()
    assert len(frames) == 2
    assert frames[0] == TAG
    out = Request.decode(frames)
    assert out == req
    assert out.token is None


def test_request_round_trip_with_token_and_largest_id() -> None:
    req = Request(id=(1 << 53) - 1, op=P.OP_SHARE_FILE, args=share_args(), cid="c", token="tok-123")
    frames = req.encode()
    assert len(frames) == 2
    out = Request.decode(frames)
    assert out == req
    assert out.token == "tok-123"


def test_request_accepts_memoryview_like_frames() -> None:
    frames = [bytearray(f) for f in Request(id=1, op=P.OP_PING, args={}).encode()]
    assert Request.decode(frames).op == P.OP_PING


def test_request_without_args_key_is_empty_args_for_ping() -> None:
    out = Request.decode(header_frames({"id": 3, "op": P.OP_PING}))
    assert out.args == {}
    assert out.cid == ""


# --- control replies: round trips -----------------------------------------------------------


def test_reply_ok_round_trip() -> None:
    reply = Reply.success(9, {"groups": [{"name": "films"}], "n": 3})
    out = Reply.decode(reply.encode())
    assert out.ok is True
    assert out.id == 9
    assert out.result == reply.result
    assert out.unwrap() == reply.result


def test_reply_error_round_trip_keeps_code_and_message() -> None:
    reply = Reply.failure(5, Refused(Code.NO_SUCH_GROUP, "no group 'x'"))
    frames = reply.encode()
    assert len(frames) == 2
    out = Reply.decode(frames)
    assert out.ok is False
    assert out.id == 5
    assert out.error is not None
    assert out.error.code is Code.NO_SUCH_GROUP
    assert out.error.message == "no group 'x'"
    with pytest.raises(RemoteError) as info:
        out.unwrap()
    assert info.value.code is Code.NO_SUCH_GROUP


def test_reply_error_with_unknown_code_keeps_the_string() -> None:
    out = Reply.decode(header_frames({"id": 1, "ok": False, "error": {"code": "future_x", "message": "m"}}))
    assert out.error is not None
    assert out.error.code == "future_x"


@pytest.mark.parametrize(
    "header",
    [
        {"id": 1},  # no ok
        {"id": 1, "ok": "yes", "result": {}},
        {"id": 1, "ok": False},  # no error
        {"id": 1, "ok": False, "error": "boom"},
        {"id": 1, "ok": False, "error": {"code": 3, "message": "m"}},
        {"id": 1, "ok": False, "error": {"code": "x"}},
        {"id": 1, "ok": True, "result": [1, 2]},
    ],
)
def test_malformed_reply_is_bad_json(header: dict[str, Any]) -> None:
    with expect_code(Code.BAD_JSON):
        Reply.decode(header_frames(header))


@pytest.mark.parametrize("bad_id", [-1, True, "3", 1 << 53, None, 1.5])
def test_reply_with_bad_id_is_bad_args(bad_id: Any) -> None:
    with expect_code(Code.BAD_ARGS):
        Reply.decode(header_frames({"id": bad_id, "ok": True, "result": {}}))


# --- control requests: framing and header errors --------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3, 4])
def test_wrong_frame_count_is_bad_frame(count: int) -> None:
    good = [*request_frames(P.OP_PING, {}), b"blob", b"extra"]
    with expect_code(Code.BAD_FRAME):
        Request.decode(good[:count])
    with expect_code(Code.BAD_FRAME):
        Reply.decode(good[:count])


def test_wrong_tag_is_bad_frame() -> None:
    frames = request_frames(P.OP_PING, {})
    frames[0] = P.PIECE_TAG
    with expect_code(Code.BAD_FRAME):
        Request.decode(frames)
    with expect_code(Code.BAD_FRAME):
        Reply.decode([b"XXXX", orjson.dumps({"id": 1, "ok": True, "result": {}})])


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"id": 1,}'])
def test_invalid_json_is_bad_json(raw: bytes) -> None:
    with expect_code(Code.BAD_JSON):
        Request.decode([TAG, raw])


@pytest.mark.parametrize("header", [[1, 2], "text", 3, None, True])
def test_non_object_header_is_bad_json(header: Any) -> None:
    with expect_code(Code.BAD_JSON):
        Request.decode(header_frames(header))
    with expect_code(Code.BAD_JSON):
        Reply.decode(header_frames(header))


def test_header_over_limit_is_too_large_even_when_valid_json() -> None:
    header = orjson.dumps({"id": 1, "op": P.OP_PING, "args": {}, "cid": "x" * P.MAX_HEADER_BYTES})
    assert len(header) > P.MAX_HEADER_BYTES
    with expect_code(Code.TOO_LARGE):
        Request.decode([TAG, header])
    with expect_code(Code.TOO_LARGE):
        Reply.decode([TAG, header])


def test_header_just_under_limit_is_not_too_large() -> None:
    base = orjson.dumps({"id": 1, "op": P.OP_PING, "cid": "", "args": {}, "pad": ""})
    header = orjson.dumps(
        {"id": 1, "op": P.OP_PING, "cid": "", "args": {}, "pad": "x" * (P.MAX_HEADER_BYTES - len(base))}
    )
    assert len(header) == P.MAX_HEADER_BYTES
    assert Request.decode([TAG, header]).op == P.OP_PING  # unknown header keys are ignored


@pytest.mark.parametrize("op", ["no_such_op", "", "PING", None, 3, ["ping"]])
def test_unknown_or_missing_op(op: Any) -> None:
    with expect_code(Code.UNKNOWN_OP):
        Request.decode(header_frames({"id": 1, "op": op, "args": {}}))


def test_missing_op_key_is_unknown_op() -> None:
    with expect_code(Code.UNKNOWN_OP):
        Request.decode(header_frames({"id": 1, "args": {}}))


@pytest.mark.parametrize("bad_id", [-1, True, False, "1", 1.0, None, 1 << 53])
def test_request_bad_id_is_bad_args(bad_id: Any) -> None:
    with expect_code(Code.BAD_ARGS):
        Request.decode(header_frames({"id": bad_id, "op": P.OP_PING, "args": {}}))


@pytest.mark.parametrize("extra", [{"cid": 5}, {"cid": "x" * 65}, {"token": 5}, {"token": "t" * 129}])
def test_bad_cid_or_token_is_bad_args(extra: dict[str, Any]) -> None:
    with expect_code(Code.BAD_ARGS):
        Request.decode(header_frames({"id": 1, "op": P.OP_PING, "args": {}, **extra}))


# --- arguments ------------------------------------------------------------------------------


def test_missing_argument_is_bad_args() -> None:
    with expect_code(Code.BAD_ARGS):
        Request.decode(request_frames(P.OP_LOGIN, {"user": "alice"}))


def test_extra_argument_is_bad_args() -> None:
    with expect_code(Code.BAD_ARGS):
        Request.decode(request_frames(P.OP_LOGIN, {"user": "alice", "password": "pw", "admin": True}))
    with expect_code(Code.BAD_ARGS):
        Request.decode(request_frames(P.OP_PING, {"x": 1}))


@pytest.mark.parametrize("args", [None, [], "user=alice", 3])
def test_args_not_an_object_is_bad_args(args: Any) -> None:
    with expect_code(Code.BAD_ARGS):
        Request.decode(request_frames(P.OP_LOGIN, args))


@pytest.mark.parametrize(
    ("op", "args"),
    [
        (P.OP_LOGIN, {"user": "alice", "password": 1234}),
        (P.OP_LOGIN, {"user": "alice", "password": ""}),
        (P.OP_LOGIN, {"user": "alice", "password": "x" * (P.MAX_PASSWORD_LEN + 1)}),
        (P.OP_LOGIN, {"user": 5, "password": "pw"}),
        (P.OP_CREATE_GROUP, {"group": ["films"]}),
        (P.OP_FILE_INFO, {"group": "films", "file": 7}),
        (P.OP_PROGRESS, {"group": "films", "file": "a", "have": 5}),
        (P.OP_ANNOUNCE, {"endpoint": "http://x:1", "plain": False, "shares": []}),
        (P.OP_ANNOUNCE, {"endpoint": "tcp://h:1", "plain": "no", "shares": []}),
        (P.OP_ANNOUNCE, {"endpoint": "tcp://h:1", "plain": False, "shares": {}}),
        (P.OP_ANNOUNCE, {"endpoint": "tcp://h:1", "plain": False, "shares": ["films/a"]}),
    ],
)
def test_wrong_typed_argument_is_bad_args(op: str, args: dict[str, Any]) -> None:
    with expect_code(Code.BAD_ARGS):
        Request.decode(request_frames(op, args))


@pytest.mark.parametrize(
    "over",
    [
        {"size": "40000"},
        {"size": -1},
        {"size": 40_000.0},
        {"size": (1 << 50) + 1},
        {"piece_size": P.MIN_PIECE_SIZE - 1},
        {"piece_size": P.MAX_PIECE_SIZE + 1},
        {"piece_size": "32768"},
        {"root": "ab" * 31},
        {"root": "zz" * 32},
        {"root": 5},
    ],
)
def test_share_file_argument_checks(over: dict[str, Any]) -> None:
    with expect_code(Code.BAD_ARGS):
        Request.decode(request_frames(P.OP_SHARE_FILE, share_args(**over)))


@pytest.mark.parametrize("field", ["size", "piece_size"])
def test_bool_passed_as_int_is_bad_args(field: str) -> None:
    with expect_code(Code.BAD_ARGS):
        Request.decode(request_frames(P.OP_SHARE_FILE, share_args(**{field: True})))


def test_a_third_frame_is_bad_frame() -> None:
    with expect_code(Code.BAD_FRAME):
        Request.decode(request_frames(P.OP_LOGIN, {"user": "alice", "password": "pw"}, blob=b"x"))
    with expect_code(Code.BAD_FRAME):
        Request.decode(request_frames(P.OP_PING, {}, blob=b""))


def test_validate_args_returns_only_declared_fields() -> None:
    clean = validate_args(P.OP_SHARE_FILE, share_args())
    assert clean == share_args()
    refs = [{"group": "films", "file": "a.mkv", "have": "gA=="}, {"group": "films", "file": "b.mkv"}]
    clean = validate_args(P.OP_ANNOUNCE, {"endpoint": "tcp://10.0.0.1:5555", "plain": False, "shares": refs})
    assert clean["shares"] == refs


def test_announce_share_with_bad_file_name_is_bad_name() -> None:
    args = {"endpoint": "tcp://h:1", "plain": False, "shares": [{"group": "films", "file": "../x"}]}
    with expect_code(Code.BAD_NAME):
        Request.decode(request_frames(P.OP_ANNOUNCE, args))


def test_peek_id() -> None:
    assert peek_id(request_frames(P.OP_PING, {})) == 7
    assert peek_id([TAG, b"{broken"]) == 0
    assert peek_id([TAG]) == 0
    assert peek_id(header_frames({"id": True})) == 0
    assert peek_id(header_frames([7])) == 0


# --- names ----------------------------------------------------------------------------------

BAD_FILE_NAMES = [
    "../x",
    "/etc/passwd",
    "",
    "..",
    ".",
    "a\x00b",
    "a\\b",
    "..\\x",
    "a/b",
    "dir/",
    "tab\there",
    "new\nline",
    "del\x7f",
    "x" * 300,
    "é" * 128,  # 256 UTF-8 bytes
]


@pytest.mark.parametrize("name", BAD_FILE_NAMES)
def test_bad_file_names_are_bad_name(name: str) -> None:
    with expect_code(Code.BAD_NAME):
        check_file_name(name)
    with expect_code(Code.BAD_NAME):
        Request.decode(request_frames(P.OP_FILE_INFO, {"group": "films", "file": name}))


def test_file_name_that_is_not_utf8_encodable_is_bad_name() -> None:
    with expect_code(Code.BAD_NAME):
        check_file_name("bad\ud800surrogate")


@pytest.mark.parametrize(
    "name", ["movie.mkv", "report (final) v2.pdf", ".hidden", "x" * 255, "é" * 127, "日本"]
)
def test_good_file_names_pass(name: str) -> None:
    assert check_file_name(name) == name
    assert (
        Request.decode(request_frames(P.OP_FILE_INFO, {"group": "films", "file": name})).args["file"] == name
    )


@pytest.mark.parametrize("value", [None, 3, b"name", ["a"]])
def test_non_string_names_are_bad_args(value: Any) -> None:
    with expect_code(Code.BAD_ARGS):
        check_file_name(value)
    with expect_code(Code.BAD_ARGS):
        check_name(value)


@pytest.mark.parametrize(
    "name",
    [".alice", "-alice", "", ".", "..", "../x", "a/b", "a\\b", "a b", "a\x00", "é", "x" * 65, "alice\n"],
)
def test_bad_user_and_group_names_are_bad_name(name: str) -> None:
    with expect_code(Code.BAD_NAME):
        check_name(name, "user name")
    with expect_code(Code.BAD_NAME):
        Request.decode(request_frames(P.OP_CREATE_USER, {"user": name, "password": "pw"}))
    with expect_code(Code.BAD_NAME):
        Request.decode(request_frames(P.OP_CREATE_GROUP, {"group": name}))


@pytest.mark.parametrize("name", ["alice", "a", "_x", "Bob.Smith-2", "0", "x" * 64])
def test_good_user_names_pass(name: str) -> None:
    assert check_name(name) == name


# --- bitfield -------------------------------------------------------------------------------


def test_bitfield_set_operations() -> None:
    bf = Bitfield(10)
    assert len(bf) == 0
    assert not bf.complete
    assert bf.add(3) is True
    assert bf.add(3) is False
    assert bf.add(9) is True
    assert bf.add(0) is True
    assert len(bf) == 3
    assert 3 in bf
    assert 9 in bf
    assert 4 not in bf
    assert 10 not in bf
    assert -1 not in bf
    assert "3" not in bf
    assert list(bf) == [0, 3, 9]
    assert list(bf.missing()) == [1, 2, 4, 5, 6, 7, 8]
    bf.discard(3)
    bf.discard(3)  # discarding an absent piece is a no-op
    bf.discard(5)
    assert len(bf) == 2
    assert 3 not in bf
    assert list(bf) == [0, 9]


def test_bitfield_complete_and_full() -> None:
    bf = Bitfield.from_indices(5, [0, 1, 2, 3])
    assert not bf.complete
    bf.add(4)
    assert bf.complete
    assert bf == Bitfield.full(5)
    assert list(bf.missing()) == []
    assert Bitfield(0).complete
    assert len(Bitfield(0)) == 0


def test_bitfield_copy_is_independent() -> None:
    bf = Bitfield.from_indices(12, [1, 11])
    cp = bf.copy()
    cp.add(2)
    assert 2 not in bf
    assert bf != cp
    assert len(bf) == 2


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 16, 17, 1000])
def test_bitfield_encode_decode_round_trip(size: int) -> None:
    bf = Bitfield.from_indices(size, range(0, size, 3))
    if size:
        bf.add(size - 1)
    text = bf.encode()
    assert isinstance(text, str)
    out = Bitfield.decode(size, text)
    assert out == bf
    assert list(out) == list(bf)
    assert len(out) == len(bf)


def test_bitfield_bit_order_is_msb_first() -> None:
    assert Bitfield.from_indices(9, [0]).encode() == base64.b64encode(b"\x80\x00").decode()
    assert Bitfield.from_indices(9, [8]).encode() == base64.b64encode(b"\x00\x80").decode()


@pytest.mark.parametrize("text", ["not base64!", "gA=", "g A==", "gA==\n", 5, None, b"gA=="])
def test_bitfield_decode_rejects_bad_base64(text: Any) -> None:
    with expect_code(Code.BAD_ARGS):
        Bitfield.decode(8, text)


@pytest.mark.parametrize(
    ("size", "raw"), [(8, b""), (8, b"\x00\x00"), (9, b"\x00"), (0, b"\x00"), (17, b"\x00" * 2)]
)
def test_bitfield_decode_rejects_wrong_length(size: int, raw: bytes) -> None:
    with expect_code(Code.BAD_ARGS):
        Bitfield.decode(size, base64.b64encode(raw).decode())


@pytest.mark.parametrize(("size", "last"), [(1, 0x40), (7, 0x01), (9, 0x40), (10, 0x20), (15, 0x01)])
def test_bitfield_decode_rejects_bits_past_last_piece(size: int, last: int) -> None:
    nbytes = (size + 7) // 8
    raw = bytes(nbytes - 1) + bytes([last])
    with expect_code(Code.BAD_ARGS):
        Bitfield.decode(size, base64.b64encode(raw).decode())
    # The last real piece's bit alone is fine.
    ok = bytes(nbytes - 1) + bytes([0x80 >> ((size - 1) % 8)])
    assert list(Bitfield.decode(size, base64.b64encode(ok).decode())) == [size - 1]


# --- grants (signing and checking: tests/test_grants.py) ---------------------------------------

SIGNER = GrantSigner(b"s" * 32)
REQUESTER = "r" * 40


def make_grant(user: str, group: str, file: str, lifetime: float) -> Grant:
    return SIGNER.grant(user, REQUESTER, group, file, lifetime)


# --- piece messages -------------------------------------------------------------------------


def test_piece_request_round_trip() -> None:
    grant = make_grant("bob", "films", "movie.mkv", 60)
    req = PieceRequest(id=11, group="films", file="movie.mkv", piece=3, grant=grant)
    frames = req.encode()
    assert frames[0] == P.PIECE_TAG
    assert PieceRequest.decode(frames) == req


def piece_request_header(**over: Any) -> dict[str, Any]:
    grant = make_grant("bob", "films", "movie.mkv", 60)
    h = {"id": 1, "op": P.OP_GET_PIECE, "g": "films", "f": "movie.mkv", "p": 0, "grant": grant.to_wire()}
    h.update(over)
    return h


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"op": "put"}, Code.UNKNOWN_OP),
        ({"p": -1}, Code.BAD_ARGS),
        ({"p": True}, Code.BAD_ARGS),
        ({"p": P.MAX_PIECES}, Code.BAD_ARGS),
        ({"p": "0"}, Code.BAD_ARGS),
        ({"f": "../x"}, Code.BAD_NAME),
        ({"g": ".films"}, Code.BAD_NAME),
        ({"grant": None}, Code.BAD_JSON),
        ({"grant": {"user": "bob"}}, Code.BAD_JSON),
        ({"id": -5}, Code.BAD_ARGS),
    ],
)
def test_bad_piece_request(over: dict[str, Any], code: Code) -> None:
    with expect_code(code):
        PieceRequest.decode([P.PIECE_TAG, orjson.dumps(piece_request_header(**over))])


def test_piece_request_framing_errors() -> None:
    good = [P.PIECE_TAG, orjson.dumps(piece_request_header())]
    with expect_code(Code.BAD_FRAME):
        PieceRequest.decode([*good, b"x"])
    with expect_code(Code.BAD_FRAME):
        PieceRequest.decode([TAG, good[1]])
    with expect_code(Code.BAD_JSON):
        PieceRequest.decode([P.PIECE_TAG, b"[1]"])


def test_piece_reply_round_trips() -> None:
    out = PieceReply.decode(PieceReply(4, 2, b"payload").encode())
    assert (out.id, out.piece, out.payload, out.error) == (4, 2, b"payload", None)
    out = PieceReply.decode(PieceReply.failure(4, 2, Refused(Code.NO_SUCH_PIECE, "nope")).encode())
    assert out.payload is None
    assert out.error is not None
    assert out.error.code is Code.NO_SUCH_PIECE
    assert out.error.message == "nope"


def test_piece_reply_malformed() -> None:
    with expect_code(Code.BAD_FRAME):
        PieceReply.decode([P.PIECE_TAG])
    with expect_code(Code.BAD_FRAME):
        PieceReply.decode([TAG, orjson.dumps({"id": 1, "p": 0, "ok": True}), b"x"])
    with expect_code(Code.BAD_JSON):
        PieceReply.decode([P.PIECE_TAG, orjson.dumps({"id": 1, "ok": True}), b"x"])
    # ok without a payload frame is an error, not a success with no data
    out = PieceReply.decode([P.PIECE_TAG, orjson.dumps({"id": 1, "p": 0, "ok": True})])
    assert out.error is not None
    assert out.error.code is Code.BAD_FRAME


def test_piece_reply_with_non_object_error_is_protocol_error() -> None:
    frames = [P.PIECE_TAG, orjson.dumps({"id": 1, "p": 0, "ok": False, "error": "boom"})]
    try:
        out = PieceReply.decode(frames)
    except ProtocolError:
        return
    assert out.error is not None
    assert out.payload is None


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed(Record):
    """A record holding a record: nested records arrive typed and checked."""

    grant: Grant


def test_records_round_trip() -> None:
    records = [
        GroupEntry(name="films", admin="alice", members=3, role="admin"),
        FileEntry(name="a.mkv", size=10, online=1, sharers=2),
        FileMeta(group="films", name="a.mkv", size=10, piece_size=16384, root=HEX64),
        Holder(user="bob", endpoint="tcp://h:1", key="k" * 40, plain=False, have="gA=="),
        make_grant("bob", "g", "f", 60),
        Heartbeat(epoch="e1", online=True),
        LeaveResult(group_deleted=False, new_admin="bob", files_removed=["a", "b"]),
    ]
    for rec in records:
        wire = orjson.loads(orjson.dumps(rec.to_wire()))
        assert type(rec).from_wire(wire) == rec


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (FileEntry, {"name": "a", "size": "10", "online": 0, "sharers": 1}),
        (FileEntry, {"name": "a", "size": True, "online": 0, "sharers": 1}),
        (FileEntry, {"name": "a", "size": 1.5, "online": 0, "sharers": 1}),
        (FileEntry, {"name": "a", "size": 10, "online": 0}),  # missing field
        (FileEntry, {"name": None, "size": 10, "online": 0, "sharers": 1}),
        (Holder, {"user": "bob", "endpoint": "tcp://h:1", "key": "k" * 40, "plain": False, "have": 3}),
        (Holder, {"user": "bob", "endpoint": "tcp://h:1", "key": "k" * 40, "plain": "no", "have": None}),
        (Signed, {"grant": "g"}),
        (Signed, {"grant": {"user": "bob"}}),
        (
            Grant,
            {"user": "bob", "key": "k", "group": "g", "file": "f", "issued": 1, "exp": "soon", "sig": "m"},
        ),
        (Grant, {"user": "bob", "key": "k", "group": "g", "file": "f", "issued": 1, "exp": True, "sig": "m"}),
        (Heartbeat, {"epoch": "e", "online": 1}),
        (LeaveResult, {"group_deleted": False, "new_admin": 5, "files_removed": []}),
        (LeaveResult, {"group_deleted": False, "new_admin": None, "files_removed": "a"}),
        (GroupEntry, [1, 2]),
        (GroupEntry, None),
    ],
)
def test_from_wire_rejects_wrong_types(cls: Any, data: Any) -> None:
    with expect_code(Code.BAD_JSON):
        cls.from_wire(data)


def test_from_wire_accepts_none_for_optional_fields() -> None:
    bob = {"user": "bob", "endpoint": "tcp://h:1", "key": "k" * 40, "plain": False}
    h = Holder.from_wire({**bob, "have": None})
    assert h.have is None
    assert Signed.from_wire({"grant": make_grant("bob", "g", "f", 60).to_wire()}).grant.user == "bob"
    h = Holder.from_wire(bob)  # absent == None
    assert h.have is None
    lr = LeaveResult.from_wire({"group_deleted": True, "new_admin": None, "files_removed": []})
    assert lr.new_admin is None
    assert lr.group_deleted is True


def test_from_wire_accepts_int_for_float_and_ignores_unknown_keys() -> None:
    g = Grant.from_wire(
        {"user": "u", "key": "k", "group": "g", "file": "f", "issued": 1, "exp": 5, "sig": "m", "x": 1}
    )
    assert g.exp == 5


@pytest.mark.parametrize(
    ("size", "piece_size", "pieces", "lengths"),
    [
        (0, 16, 0, []),
        (1, 16, 1, [1]),
        (48, 16, 3, [16, 16, 16]),
        (50, 16, 4, [16, 16, 16, 2]),
        (15, 16, 1, [15]),
        (17, 16, 2, [16, 1]),
    ],
)
def test_file_meta_pieces(size: int, piece_size: int, pieces: int, lengths: list[int]) -> None:
    meta = FileMeta(group="g", name="f", size=size, piece_size=piece_size, root=HEX64)
    assert meta.num_pieces == pieces
    assert [meta.piece_len(i) for i in range(meta.num_pieces)] == lengths
    assert sum(lengths) == size


@pytest.mark.parametrize(
    "endpoint", ["tcp://-:1", "tcp://host:0", "tcp://host:70000", "tcp://:5", "udp://h:5"]
)
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    args = {"endpoint": endpoint, "plain": False, "shares": []}
    with expect_code(Code.BAD_ARGS):
        validate_args(P.OP_ANNOUNCE, args)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5", "tcp://[::1]:6000", "tcp://host-1.lan:65535"])
def test_good_endpoints_pass(endpoint: str) -> None:
    args = {"endpoint": endpoint, "plain": False, "shares": []}
    assert validate_args(P.OP_ANNOUNCE, args)["endpoint"] == endpoint
