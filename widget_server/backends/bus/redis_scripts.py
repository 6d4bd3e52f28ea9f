"""The Lua scripts of the Redis conversation bus: each runs atomically, so a seq is given once, a lease has one
holder and a lapsed reply is ended by exactly one node.

Keys of a conversation C (under the bus prefix P): `P c:C:m` (hash: epoch, seq, memtoken), `P c:C:log` (sorted
set: the frame's JSON by seq), `P c:C:nodes` (set: `token|node` for each line of C a node listens to), `P c:C:lease`
(the holding node, expiring), `P c:C:reply` (hash: the running reply's info, and a cancel flag); `P leases` (sorted
set: conversation by lease expiry, for the sweepers). Times come from Redis's own clock (TIME), so nodes' clocks need
not agree.

Frames and control messages are published to the channel of each node listening to C (`P n:NODE`), never back to
the node that sent them: a node delivers its own frames from what APPEND returns. On a node's channel a frame is
`fC|epoch|{"seq":N,…}` and a control message `cC|{…}`.
"""

from __future__ import annotations

NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# Publish ARGV[i] to every node listening to the conversation (KEYS[k], its set of `token|node`) but the sender;
# a node with two lines of it (one being dropped) gets the message twice and keeps it once, by seq.
FAN_OUT = """
local function fan_out(members_key, prefix, sender, message)
  local sent = {}
  for _, member in ipairs(redis.call('SMEMBERS', members_key)) do
    local node = string.sub(member, 14)
    if node ~= sender and not sent[node] then
      sent[node] = true
      redis.call('PUBLISH', prefix .. node, message)
    end
  end
end
"""

TOKEN_CHARS = 12  # the hex token before the `|` of a member, hence `string.sub(member, 14)` above

# KEYS: meta, nodes. ARGV: `token|node`, ttl ms. Returns {seq, epoch or ''}: every frame after seq reaches the node.
JOIN = """
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
return {tonumber(redis.call('HGET', KEYS[1], 'seq') or '0'), redis.call('HGET', KEYS[1], 'epoch') or ''}
"""

# KEYS: nodes. ARGV: node channel prefix, sender node, conversation id, message JSON.
CONTROL = FAN_OUT + """
fan_out(KEYS[1], ARGV[1], ARGV[2], 'c' .. ARGV[3] .. '|' .. ARGV[4])
return 1
"""

# KEYS: meta, log, nodes. ARGV: frame JSON without seq ('{…}'), an epoch for a new log, max frames, ttl ms, node
# channel prefix, the epoch the node expects ('' for any), sender node, conversation id. Returns {seq, epoch}, seq 0
# when the log is not the one expected (lost since): nothing of what ran before the loss starts the new log.
APPEND = FAN_OUT + """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if ARGV[6] ~= '' and epoch ~= ARGV[6] then return {0, epoch or ''} end
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local payload = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('ZADD', KEYS[2], seq, payload)
local most = tonumber(ARGV[3])
if seq > most then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', seq - most) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]) * 2)
fan_out(KEYS[3], ARGV[5], ARGV[7], 'f' .. ARGV[8] .. '|' .. epoch .. '|' .. payload)
return {seq, epoch}
"""

# KEYS: meta, log. ARGV: an epoch for a new log, ttl ms, the client's last seq (-1: none).
# Returns {known, epoch, seq, covered, frames}.
SINCE = """
local known = redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 0
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local last = tonumber(ARGV[3])
if known and last >= 0 and last <= seq then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if last == seq or (first[2] and tonumber(first[2]) <= last + 1) then
    return {1, epoch, seq, 1, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. last, '+inf')}
  end
end
return {known and 1 or 0, epoch, seq, 0, {}}
"""

# KEYS: lease, reply, meta, leases. ARGV: node, lease ms, the reply's info JSON, conversation id.
# Returns {taken, memtoken, info of a lapsed reply taken over or ''}.
ACQUIRE = NOW + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, '', ''} end
local lapsed = redis.call('HGET', KEYS[2], 'info') or ''
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'info', ARGV[3])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[4])
return {1, redis.call('HGET', KEYS[3], 'memtoken') or '', lapsed}
"""

# KEYS: lease, reply, meta, leases, nodes. ARGV: node, memtoken, conversation id, node channel prefix, ttl ms.
RELEASE = FAN_OUT + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[3], 'memtoken', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
fan_out(KEYS[5], ARGV[4], ARGV[1], 'c' .. ARGV[3] .. '|{"unlock":1}')
return 1
"""

# KEYS: lease, reply, leases. ARGV: node, lease ms, conversation id. Returns the cancel flag ('' for none), or
# false when the lease is no longer this node's.
RENEW = NOW + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[3])
return redis.call('HGET', KEYS[2], 'cancel') or ''
"""

# KEYS: reply. ARGV: the message id to cancel.
CANCEL = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'cancel', ARGV[1]) end
return 1
"""

# KEYS: leases. ARGV: the key prefix of conversations ('P c:'), most to take. Returns the infos taken over.
LAPSED = NOW + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))) do
  if redis.call('EXISTS', ARGV[1] .. id .. ':lease') == 0 then
    local reply = ARGV[1] .. id .. ':reply'
    local info = redis.call('HGET', reply, 'info')
    redis.call('DEL', reply)
    redis.call('ZREM', KEYS[1], id)
    if info then table.insert(out, info) end
  end
end
return out
"""
