"""Protocol constants: every frame tag, operation name, limit and tunable in one place.

Modelled on the ZeroMQ Guide's ``MDP.py``: the wire protocol is spelled out here so the
tracker, the peer and the tests agree on it by import, never by copy.

Each message family spells out its own frame layout in its class docstring (the way zguide's
kvmsg does): ``messages.control`` (tracker requests, replies), ``messages.pieces`` (piece
requests and replies), ``messages.pipeline`` (the downloader's inproc messages) and
``messages.events`` (progress events). Binary data (piece digests, piece payloads) always
travels as raw frames, never inside JSON.
"""

from __future__ import annotations

CONTROL_TAG = b"TRK1"
PIECE_TAG = b"TPC1"
KEY_TAG = b"KEY1"  # the tracker's key service: [KEY_TAG] -> [KEY_TAG, public key]

# Sizes.
MAX_HEADER_BYTES = 64 * 1024  # a JSON header never needs more; bigger is an attack or a bug
MAX_ID = (1 << 53) - 1  # request ids: exact in JSON numbers everywhere
MAX_CID = 64  # client id string
MAX_TOKEN = 128  # session token string
MAX_FILE_SIZE = 1 << 50
MAX_SHARES = 10_000  # shares in one announce message (a peer sends more in batches)
MAX_NAME_LEN = 64  # user and group names
MAX_FILE_NAME_BYTES = 255  # one path component on common file systems
MAX_PASSWORD_LEN = 1024
DIGEST_SIZE = 32  # SHA-256
DEFAULT_PIECE_SIZE = 1024 * 1024  # chosen from scripts/bench's sweep (README, Performance)
MIN_PIECE_SIZE = 16 * 1024
MAX_PIECE_SIZE = 16 * 1024 * 1024
# 256 Ki pieces: 8 MiB of digests; 256 GiB at the default piece size, 4 TiB at the largest
# (uploads choose a larger piece size when a file needs it). The bound is what keeps a
# bitfield (32 KiB, 43,692 characters of base64) inside one control message with room to spare.
MAX_PIECES = 1 << 18
# A file's piece digests travel from holder to downloader (never through the tracker, which
# keeps only their root), in pages that fit one frame.
DIGESTS_PER_PAGE = 16 * 1024  # 512 KiB a page
MAX_DIGEST_PAGES = MAX_PIECES // DIGESTS_PER_PAGE

# What each socket accepts (ZMQ_MAXMSGSIZE bounds a frame; frames per message are counted on
# receipt; HWMs bound messages queued per connection). Every message we send fits the limit of
# the socket that reads it: control headers are at most MAX_HEADER_BYTES (lists are paged).
FRAME_SLACK = 1024
CONTROL_MAX_MSG = MAX_HEADER_BYTES + FRAME_SLACK  # tracker requests and replies, per frame
CONTROL_FRAMES = 2  # tag, header
SEEDER_MAX_MSG = MAX_HEADER_BYTES + FRAME_SLACK  # seeders only ever receive small requests
PIECE_FRAMES = 3  # tag, header, payload
PIECE_MAX_MSG = MAX_PIECE_SIZE + MAX_HEADER_BYTES  # the most a downloader accepts per frame

# Lists of any length travel in pages: a cursor ("after": the last name of the previous page)
# and a limit; the tracker also stops a page at PAGE_BYTES of entries, so a page of the longest
# names (or of holders with the largest bitfields) still fits one message.
PAGE_BYTES = 48 * 1024
DEFAULT_PAGE = 500
MAX_PAGE = 1000
# A holder list is a bounded sample the tracker chooses (as BitTorrent trackers return a bounded
# peer set): the downloader names the holders it already knows and gets others, and word of
# those that left.
HOLDER_SAMPLE = 50
MAX_KNOWN = 200
MAX_PUSH_PIECES = 1000  # pieces named in one verify push

# Control operations.
OP_CREATE_USER = "create_user"
OP_LOGIN = "login"
OP_LOGOUT = "logout"
OP_CREATE_GROUP = "create_group"
OP_JOIN_GROUP = "join_group"
OP_LEAVE_GROUP = "leave_group"
OP_LIST_GROUPS = "list_groups"
OP_LIST_REQUESTS = "list_requests"
OP_ACCEPT_REQUEST = "accept_request"
OP_REJECT_REQUEST = "reject_request"
OP_LIST_FILES = "list_files"
OP_FILE_INFO = "file_info"
OP_SHARE_FILE = "share_file"
OP_STOP_SHARE = "stop_share"
OP_HOLDERS = "holders"
OP_ANNOUNCE = "announce"
OP_PROGRESS = "progress"
OP_HEARTBEAT = "heartbeat"
OP_PING = "ping"
OP_REMOVE_FILE = "remove_file"
OP_REMOVE_MEMBER = "remove_member"
OP_REPORT = "report"  # a holder sent a piece that failed its hash
OP_VERIFIED = "verified"  # a holder re-checked its copy after reports

# What the tracker pushes to peers (messages.control.Push).
PUSH_REVOKE = "revoke"  # to seeders: refuse grants a Revocation covers
PUSH_REMOVED = "removed"  # to holders and downloaders: the admin removed a file
PUSH_VERIFY = "verify"  # to a holder: downloaders reported these pieces as bad
PUSH_HOLDERS = "holders"  # to a download: the file's holders changed

# Piece operations.
OP_GET_PIECE = "get"
OP_GET_DIGESTS = "digests"

# Timing (seconds).
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_EXPIRY = 2.5  # the tracker drops a peer unseen for this long: a dead holder goes within 3 s
GRANT_LIFETIME = 60.0  # downloaders refresh holders (and grants) well before; revocations are pushed
REQUEST_TIMEOUT = 3.0  # one control request attempt
REQUEST_RETRIES = 3
