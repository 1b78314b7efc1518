--[[
  Remembers one Message-ID that left the site through the outbound listener, so that a bounce
  returning it can be told from backscatter (src/checks/backscatter/outbound-record.ts).

  KEYS[1]  the Message-ID's key (namespace prefix + hash of the Message-ID)
  ARGV[1]  now, integer milliseconds since the epoch (the caller's clock)
  ARGV[2]  how long to remember it (ms)

  Stored: a string, the expiry instant in ms (now + ttl); a later record extends it.
  TTL: ttl ms (garbage collection only: outbound-seen-1.lua decides by the caller's clock).

  Returns the stored expiry instant (ms).
]]
local expires = tonumber(ARGV[1]) + tonumber(ARGV[2])
local old = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if old > expires then expires = old end
redis.call('SET', KEYS[1], string.format('%.0f', expires), 'PX', math.max(1, expires - tonumber(ARGV[1])))
return expires
