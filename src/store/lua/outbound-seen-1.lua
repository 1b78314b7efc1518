--[[
  Whether a Message-ID was recorded by outbound-record-1.lua and has not expired.

  KEYS[1]  the Message-ID's key (namespace prefix + hash of the Message-ID)
  ARGV[1]  now, integer milliseconds since the epoch (the caller's clock)

  Reads the expiry instant stored by outbound-record-1.lua; changes nothing.

  Returns 1 when recorded and alive at `now` (expiry >= now), else 0.
]]
local expires = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if expires >= tonumber(ARGV[1]) then return 1 end
return 0
