--[[
  Takes a concurrency slot (an open SMTP connection) unless the limit is reached.

  KEYS[1]  sorted set of slot holders: member = slot id, score = lease expiry (ms)
  ARGV[1]  now, integer milliseconds since the epoch
  ARGV[2]  slot id (instance id + sequence number, unique per connection)
  ARGV[3]  limit (slots)
  ARGV[4]  lease (ms): a slot not refreshed within this time is freed (its instance crashed)
  TTL: the lease, reset on every acquire (the newest member expires last).

  Returns {acquired (1/0), slots in use after the call}.
]]
local function f(x) return string.format('%.0f', x) end
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], f(now + lease), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], lease)
  return {1, count}
end
if count >= tonumber(ARGV[3]) then
  return {0, count}
end
redis.call('ZADD', KEYS[1], f(now + lease), ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease)
return {1, count + 1}
