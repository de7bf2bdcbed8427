"""The durable state behind ``scripts/bench --scale``, written straight into a tracker's SQLite
file before the tracker starts (``launch.bulk``: one password hash for every user).

Names: simulated peers ``u00000``..; users that log in during the bursts ``l00000``..; groups
``g00``.. (the first holds the large file list; the last two hold the swarm files); extra
one-member groups ``x00000``.. up to the list_groups count; ``acc-small`` and ``acc-big`` for
the accept_request rate, with pending requests from ``ra*``/``rb*``. ``owner`` administers
every group. The popular file (``popular.bin``, in the last group) is shared by every holder
user; its simulated holders log in from the key pairs of real seeder processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from launch import bulk
from peer.hashing import hash_file
from tracker.sqlite_store import SqliteStore
from tracker.store import Store

PASSWORD = "scale-pw"
OWNER = "owner"
POPULAR = "popular.bin"
SWARM = "swarm.bin"
FAKE_ENDPOINT = "tcp://127.0.0.1:9"  # simulated peers that nobody downloads from


@dataclass(frozen=True)
class Sizes:
    peers: int = 10_000  # simulated online peers
    groups: int = 100
    files: int = 100_000
    big_files: int = 20_000  # files of the first group (a list_files of all of them)
    all_groups: int = 20_000  # groups in all (a list_groups of all of them)
    logins: int = 500  # real logins fired at once
    bursts: int = 3  # bursts of logins (new users each time): latency figures are their medians
    holders: int = 2_000  # simulated holders of the popular file
    holder_seeders: int = 4  # real seeder processes behind them
    popular_size: int = 16 << 20
    downloaders: int = 60  # real downloaders of the swarm file, with one real seeder
    swarm_size: int = 32 << 20
    piece_size: int = 256 << 10
    accept_small: int = 100  # members of the small group of the accept_request rate
    accept_big: int = 10_000  # ... and of the big one
    accepts: int = 2_000  # accept_request calls in each
    procs: int = 2  # load processes
    per_socket: int = 500  # simulated sessions per DEALER socket
    window: float = 5.0  # seconds measured before and after the login burst
    list_files_rate: float = 20.0  # list_files probes per second (all load processes)
    holders_rate: float = 100.0  # holders probes per second


FULL = Sizes()
QUICK = Sizes(
    peers=500,
    groups=10,
    files=1_000,
    big_files=500,
    all_groups=1_000,
    logins=20,
    bursts=1,
    holders=100,
    holder_seeders=2,
    popular_size=2 << 20,
    downloaders=5,
    swarm_size=4 << 20,
    piece_size=64 << 10,
    accept_small=100,
    accept_big=1_000,
    accepts=200,
    procs=2,
    per_socket=50,
    window=2.0,
    list_files_rate=10.0,
    holders_rate=20.0,
)


def peer_name(i: int) -> str:
    return f"u{i:05d}"


def login_name(j: int) -> str:
    return f"l{j:05d}"


def group_name(k: int) -> str:
    return f"g{k:02d}"


@dataclass
class SimPeer:
    """One simulated online peer: its session and what it announces."""

    user: str
    token: str
    key: int  # index into State.keys: the CURVE key pair it speaks from
    endpoint: str
    shares: list[tuple[str, str]]
    group: str  # its own group (list_files probes)


@dataclass
class State:
    sizes: Sizes
    big_group: str
    popular_group: str
    swarm_group: str
    owner_token: str
    peers: list[SimPeer] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    popular_root: str = ""


def _files_per_group(s: Sizes) -> list[int]:
    rest, others = s.files - s.big_files, s.groups - 1
    return [s.big_files] + [rest // others + (1 if k < rest % others else 0) for k in range(others)]


def _members(s: Sizes) -> dict[str, list[str]]:
    """Each simulated peer and each login user is a member of one of the groups, round robin."""
    out: dict[str, list[str]] = {group_name(k): [] for k in range(s.groups)}
    for i in range(s.peers):
        out[group_name(i % s.groups)].append(peer_name(i))
    for j in range(s.logins * s.bursts):
        out[group_name(j % s.groups)].append(login_name(j))
    return out


def _fill_groups(store: Store, s: Sizes) -> dict[str, list[tuple[str, str]]]:
    """The groups, their members and files; user -> the files it shares."""
    members = _members(s)
    shares: dict[str, list[tuple[str, str]]] = {}
    for k, count in enumerate(_files_per_group(s)):
        g = group_name(k)
        bulk.group(store, g, OWNER, members[g])
        names = [f"f{k:02d}-{j:06d}.bin" for j in range(count)]
        sharers = members[g][: s.peers // s.groups] or [OWNER]
        for i, sharer in enumerate(sharers):
            mine = names[i :: len(sharers)]
            bulk.files(store, g, mine, sharer)
            shares.setdefault(sharer, []).extend((g, n) for n in mine)
    return shares


def build(db: str, s: Sizes, holder_keys: list[str], client_key: str, popular: str, swarm: str) -> State:
    """Write the whole state into a new SQLite file at ``db``; the simulated peers to run.

    ``holder_keys``: the public keys of the real seeders behind the popular file's holders;
    ``client_key``: the key every other simulated session (and the owner's) speaks from;
    ``popular``/``swarm``: the real files (their roots go into the file rows).
    """
    store = SqliteStore(db)
    try:
        store.begin()
        state = _fill(store, s, holder_keys, client_key, popular, swarm)
        store.commit()
    finally:
        store.close()
    return state


def _fill(store: Store, s: Sizes, holder_keys: list[str], client_key: str, popular: str, swarm: str) -> State:
    sims = [peer_name(i) for i in range(s.peers)]
    logins = [login_name(j) for j in range(s.logins * s.bursts)]
    real = [f"hs{k}" for k in range(s.holder_seeders)] + ["seed", "pd"]
    real += [f"d{j:02d}" for j in range(s.downloaders)]
    bulk.users(store, [OWNER, *sims, *logins, *real], PASSWORD)
    shares = _fill_groups(store, s)
    state = State(
        s,
        big_group=group_name(0),
        popular_group=group_name(s.groups - 1),
        swarm_group=group_name(s.groups - 2),
        owner_token=bulk.sessions(store, [OWNER], client_key)[OWNER],
        logins=logins,
    )
    _add_members(store, state.popular_group, [*sims[: s.holders], *real])
    _add_members(store, state.swarm_group, real)
    state.popular_root = _real_file(
        store, state.popular_group, POPULAR, popular, s.piece_size, sims[: s.holders]
    )
    _real_file(store, state.swarm_group, SWARM, swarm, s.piece_size, [])
    extra = s.all_groups - s.groups - 2
    bulk.groups(store, [f"x{k:05d}" for k in range(max(0, extra))], OWNER)
    _accept_groups(store, s, sims)
    state.peers = _sessions(store, s, sims, shares, state, holder_keys, client_key)
    return state


def _add_members(store: Store, group: str, users: list[str]) -> None:
    store.many("INSERT INTO members VALUES (?,?,1000000) ON CONFLICT DO NOTHING", [(group, u) for u in users])


def _real_file(store: Store, group: str, name: str, path: str, piece_size: int, sharers: list[str]) -> str:
    """A file row for real bytes (its true root), shared by ``sharers``; the root."""
    size, root, _ = hash_file(path, piece_size)
    store.run("INSERT INTO files VALUES (?,?,?,?,?,0)", group, name, size, piece_size, root)
    store.many("INSERT INTO shares VALUES (?,?,?)", [(group, name, u) for u in sharers])
    return root


def _accept_groups(store: Store, s: Sizes, sims: list[str]) -> None:
    """Two groups, of accept_small and accept_big members, each with ``accepts`` requests."""
    for group, size, prefix in (("acc-small", s.accept_small, "ra"), ("acc-big", s.accept_big, "rb")):
        pool = sims[:size]
        members = pool + [f"{prefix}m{i:05d}" for i in range(size - len(pool))]
        bulk.users(store, members[len(pool) :], PASSWORD)
        bulk.group(store, group, OWNER, members)
        asking = [f"{prefix}{i:05d}" for i in range(s.accepts)]
        bulk.users(store, asking, PASSWORD)
        bulk.requests(store, group, asking)


def _sessions(
    store: Store,
    s: Sizes,
    sims: list[str],
    shares: dict[str, list[tuple[str, str]]],
    state: State,
    holder_keys: list[str],
    client_key: str,
) -> list[SimPeer]:
    """A session per simulated peer: holders of the popular file speak from a real seeder's key
    (round robin) and announce its endpoint (filled in later); the others from ``client_key``."""
    keys = [client_key, *holder_keys]
    key_of = [1 + i % len(holder_keys) if i < s.holders else 0 for i in range(len(sims))]
    tokens: dict[str, str] = {}
    for k, key in enumerate(keys):
        tokens |= bulk.sessions(store, [u for i, u in enumerate(sims) if key_of[i] == k], key)
    peers = []
    for i, user in enumerate(sims):
        mine = list(shares.get(user, []))
        if i < s.holders:
            mine.append((state.popular_group, POPULAR))
        peers.append(SimPeer(user, tokens[user], key_of[i], FAKE_ENDPOINT, mine, group_name(i % s.groups)))
    return peers


def random_file(path: str, size: int) -> str:
    """A file of random bytes (made once per size, reused)."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 24)
            f.write(os.urandom(n))
            left -= n
    os.replace(path + ".tmp", path)
    return path
