--[[
  Extends the lease of a slot held by a live connection (called periodically, pipelined).

  KEYS[1]  sorted set of slot holders: member = slot id, score = lease expiry (ms)
  ARGV[1]  now, integer milliseconds since the epoch
  ARGV[2]  slot id
  ARGV[3]  lease (ms)
  The slot is re-added if it had expired: the connection is alive, so it does count.
  TTL: the lease, if it extends the key's current TTL.

  Returns slots in use after the call.
]]
local function f(x) return string.format('%.0f', x) end
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], f(now + lease), ARGV[2])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return redis.call('ZCARD', KEYS[1])
