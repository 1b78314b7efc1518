--[[
  Frees a concurrency slot when its connection closes.

  KEYS[1]  sorted set of slot holders: member = slot id, score = lease expiry (ms)
  ARGV[1]  now, integer milliseconds since the epoch
  ARGV[2]  slot id
  The key is deleted when no slot is left (TTL otherwise unchanged).

  Returns slots in use after the call.
]]
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]))
local count = redis.call('ZCARD', KEYS[1])
if count == 0 then
  redis.call('DEL', KEYS[1])
end
return count
