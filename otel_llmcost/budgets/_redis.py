"""Budgets shared by several hosts, in Redis: one Lua script reserves, one settles.

A script runs atomically on the server, so checking every budget a call falls under and
reserving on all of them is one step, as is replacing the reservation by the actual cost
(and deciding, once, that a soft-limit threshold was crossed). Per budget line: a hash
(``spent``, ``reserved``, ``notified``) and a sorted set of leases (member
``<ticket>:<amount>``, score: when it lapses), which the next reservation reclaims if
the process that made it died. Keys expire a day after their period (a time to live
from the ledger's clock, not Redis's, so simulated clocks work too). Needs the ``redis``
package (``pip install 'otel-llmcost[redis]'``); a single Redis (not Cluster: a call's
keys would span slots).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from otel_llmcost.budgets._store import Admission, Line, Settled, StoreUnavailable

# KEYS: hash and lease set of each line. ARGV: amount, now, lease_until, member, then per
# line: hard limit, enforced (1/0), seconds to live. Returns {granted, n_over, over..., totals...}.
_RESERVE = """
local amount, now, n = tonumber(ARGV[1]), tonumber(ARGV[2]), #KEYS / 2
local totals, over, refused = {}, {}, false
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local stale = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #stale > 0 then
    local back = 0
    for _, m in ipairs(stale) do back = back + tonumber(string.match(m, ':(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    redis.call('HINCRBY', h, 'reserved', -back)
  end
  local v = redis.call('HMGET', h, 'spent', 'reserved')
  local spent, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  totals[2 * i - 1], totals[2 * i] = spent, reserved
  local base = 4 + 3 * (i - 1)
  if spent + reserved + amount > tonumber(ARGV[base + 1]) then
    over[#over + 1] = i - 1
    if ARGV[base + 2] == '1' then refused = true end
  end
end
if not refused then
  for i = 1, n do
    local base = 4 + 3 * (i - 1)
    redis.call('HINCRBY', KEYS[2 * i - 1], 'reserved', amount)
    redis.call('ZADD', KEYS[2 * i], ARGV[3], ARGV[4])
    redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[base + 3])
    redis.call('EXPIRE', KEYS[2 * i], ARGV[base + 3])
  end
end
local out = {refused and 0 or 1, #over}
for _, i in ipairs(over) do out[#out + 1] = i end
for _, t in ipairs(totals) do out[#out + 1] = t end
return out
"""

# KEYS: as above. ARGV: member, amount, actual, then per line: soft limit, seconds to live.
# Returns, per line: spent, reserved, thresholds newly crossed (1: 80 %, 2: 100 %).
_SETTLE = """
local amount, actual, n = tonumber(ARGV[2]), tonumber(ARGV[3]), #KEYS / 2
local out = {}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local base = 3 + 2 * (i - 1)
  if redis.call('ZREM', z, ARGV[1]) == 1 then
    redis.call('HINCRBY', h, 'reserved', -amount)
  end
  local spent = redis.call('HINCRBY', h, 'spent', actual)
  local soft = tonumber(ARGV[base + 1])
  local new = 0
  if soft > 0 then
    local notified = tonumber(redis.call('HGET', h, 'notified')) or 0
    local level = 0
    if spent * 5 >= soft * 4 then level = 1 end
    if spent >= soft then level = 3 end
    new = bit.band(level, bit.bnot(notified))
    if new ~= 0 then redis.call('HSET', h, 'notified', bit.bor(notified, level)) end
  end
  redis.call('EXPIRE', h, ARGV[base + 2])
  redis.call('EXPIRE', z, ARGV[base + 2])
  out[#out + 1] = spent
  out[#out + 1] = tonumber(redis.call('HGET', h, 'reserved')) or 0
  out[#out + 1] = new
end
return out
"""


class RedisStore:
    """Budget lines in the Redis at ``url``; every command waits at most ``timeout_s``."""

    def __init__(self, url: str, timeout_s: float, prefix: str) -> None:
        try:
            import redis
        except ImportError as error:
            raise StoreUnavailable("store redis needs the redis package: "
                                   "pip install 'otel-llmcost[redis]'") from error
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # No connection is made here: the first call connects (with the same timeout).
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                            socket_connect_timeout=timeout_s,
                                            retry_on_timeout=False)
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._prefix = prefix

    def _keys(self, lines: Sequence[Line]) -> list[str]:
        keys = []
        for line in lines:
            keys += (f"{self._prefix}b:{line.key}", f"{self._prefix}l:{line.key}")
        return keys

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> list[int]:
        try:
            return script(keys=keys, args=args)  # type: ignore[no-any-return]
        except self._errors as error:
            raise StoreUnavailable(f"redis: {error}") from error

    def reserve(self, ticket: str, lines: Sequence[Line], amount: int, now_s: float,
                lease_until: float) -> Admission:
        args: list[Any] = [amount, now_s, lease_until, f"{ticket}:{amount}"]
        for line in lines:
            args += (line.hard, 1 if line.enforce else 0, _ttl(line, now_s))
        out = self._run(self._reserve, self._keys(lines), args)
        n_over = out[1]
        over = tuple(out[2:2 + n_over])
        flat = out[2 + n_over:]
        totals = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
        return Admission(out[0] == 1, over, totals)

    def settle(self, ticket: str, lines: Sequence[Line], amount: int, actual: int,
               now_s: float) -> Settled:
        args: list[Any] = [f"{ticket}:{amount}", amount, actual]
        for line in lines:
            args += (line.soft, _ttl(line, now_s))
        out = self._run(self._settle, self._keys(lines), args)
        return Settled(tuple((out[i], out[i + 1]) for i in range(0, len(out), 3)),
                       tuple(out[i + 2] for i in range(0, len(out), 3)))

    def close(self) -> None:
        self._client.close()


def _ttl(line: Line, now_s: float) -> int:
    return max(1, math.ceil(line.expires_s - now_s))
