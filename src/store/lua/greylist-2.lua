--[[
  Greylisting: records one delivery attempt of a (client network, sender, recipient) triplet.

  KEYS[1]  triplet hash
  KEYS[2]  client network hash (auto-allow)
  ARGV[1]  now, integer milliseconds since the epoch (the caller's clock)
  ARGV[2]  delay (ms): a retry earlier than first + delay is deferred again
  ARGV[3]  retry window (ms): a retry after first + delay + window starts over as new
  ARGV[4]  lifetime (ms) of a passed triplet and of an auto-allowed network, since last use
  ARGV[5]  auto-allow after this many passed triplets of the network (0 = off)

  Fields:
    triplet: first (ms of the first attempt), pass (ms it passed, 0 = not yet), last (ms of last use)
    network: passed (number of triplets that passed), last (ms of the last pass or allowed use)
  TTL: new triplet delay + window; passed triplet and network lifetime (refreshed on use).

  Returns {code, retry after ms, network passed count}; code 1 new, 2 early, 3 passed, 4 allowed.
]]
local function f(x) return string.format('%.0f', x) end
local now = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local lifetime = tonumber(ARGV[4])
local auto_allow = tonumber(ARGV[5])

local net_passed = 0
local nh = redis.call('HMGET', KEYS[2], 'passed', 'last')
if nh[1] and now - (tonumber(nh[2]) or 0) <= lifetime then
  net_passed = tonumber(nh[1]) or 0
end
if auto_allow > 0 and net_passed >= auto_allow then
  redis.call('HSET', KEYS[2], 'last', f(now))
  redis.call('PEXPIRE', KEYS[2], lifetime)
  return {4, 0, net_passed}
end

local th = redis.call('HMGET', KEYS[1], 'first', 'pass', 'last')
local first = tonumber(th[1])
local pass = tonumber(th[2]) or 0
local last = tonumber(th[3]) or 0

if first then
  if pass > 0 then
    if now - last <= lifetime then
      redis.call('HSET', KEYS[1], 'last', f(now))
      redis.call('PEXPIRE', KEYS[1], lifetime)
      return {3, 0, net_passed}
    end
  elseif now - first < delay then
    return {2, first + delay - now, net_passed}
  elseif now - first <= delay + window then
    redis.call('HSET', KEYS[1], 'pass', f(now), 'last', f(now))
    redis.call('PEXPIRE', KEYS[1], lifetime)
    net_passed = net_passed + 1
    redis.call('HSET', KEYS[2], 'passed', f(net_passed), 'last', f(now))
    redis.call('PEXPIRE', KEYS[2], lifetime)
    return {3, 0, net_passed}
  end
end

-- New triplet, or one whose retry window or lifetime ran out: start over.
redis.call('HSET', KEYS[1], 'first', f(now), 'pass', '0', 'last', f(now))
redis.call('PEXPIRE', KEYS[1], delay + window)
return {1, delay, net_passed}
