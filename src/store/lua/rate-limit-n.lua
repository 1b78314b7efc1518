--[[
  Checks several GCRA (token bucket) limits for one event. The limits that enforce (the group)
  are charged all or none; independent limits (those that only score) are charged on their own.

  n = number of keys, variable: the caller passes it with the call (EVALSHA sha n key1 .. keyn ...).
  KEYS[i]  hash of limit i's bucket
  ARGV[1]  now, integer milliseconds since the epoch (the caller's clock, so tests can drive it)
  then 9 values per key, in KEYS order, starting at ARGV[2]:
    emission interval in microseconds (period / count, integer, >= 1)
    burst (bucket size, integer >= 1)
    cost (events this request counts as; clamped to burst so a big message is not refused forever)
    escalate after (denied attempts in a row before blocking; 0 = never block)
    first block in milliseconds (doubles with every further denied attempt; the retry hint is
      the longer of the block and the time until the bucket has room)
    longest block in milliseconds
    reject after (denied attempts in a row from which the result says reject; 0 = never)
    strike window in milliseconds (strikes are forgotten this long after the last denial)
    independent (1 = charged whenever it allows by itself, 0 = part of the all-or-nothing group)

  Fields of each hash:
    tat     theoretical arrival time in microseconds ("%.0f"; absent = bucket full)
    strikes denied attempts in a row
    last    time of the last denial (ms)
    block   blocked until (ms), set by escalation
  TTL: until the bucket is full again, the block ends and the strikes are forgotten, plus 1s.

  Returns a flat array, 4 integers per key in KEYS order:
    allowed (1/0: this limit by itself allows the event), retry after in ms (0 when allowed),
    strikes, level (0 normal, 1 blocked, 2 reject)
  The group is charged only if every group limit allows; an independent limit only if it allows.
  Each limit that denies gets a strike and charges nothing.
]]
local function f(x) return string.format('%.0f', x) end
local now_ms = tonumber(ARGV[1])
local now = now_ms * 1000
local n = #KEYS
local st = {}
local all_ok = true

for i = 1, n do
  local b = 2 + (i - 1) * 9
  local s = {
    T = tonumber(ARGV[b]),
    burst = tonumber(ARGV[b + 1]),
    cost = tonumber(ARGV[b + 2]),
    after = tonumber(ARGV[b + 3]),
    block_ms = tonumber(ARGV[b + 4]),
    max_block_ms = tonumber(ARGV[b + 5]),
    reject_after = tonumber(ARGV[b + 6]),
    window_ms = tonumber(ARGV[b + 7]),
    indep = tonumber(ARGV[b + 8]) == 1,
  }
  if s.cost > s.burst then s.cost = s.burst end
  local h = redis.call('HMGET', KEYS[i], 'tat', 'strikes', 'last', 'block')
  s.tat = tonumber(h[1]) or now
  if s.tat < now then s.tat = now end
  s.strikes = tonumber(h[2]) or 0
  s.struck = h[2] ~= false
  s.last = tonumber(h[3]) or 0
  s.block = tonumber(h[4]) or 0
  if s.strikes > 0 and now_ms - s.last > s.window_ms then
    s.strikes = 0
    s.block = 0
  end
  s.new_tat = s.tat + s.cost * s.T
  local over = s.new_tat - now - s.burst * s.T
  s.ok = over <= 0 and s.block <= now_ms
  s.retry = 0
  if over > 0 then s.retry = math.ceil(over / 1000) end
  if s.block - now_ms > s.retry then s.retry = s.block - now_ms end
  if not s.ok and not s.indep then all_ok = false end
  st[i] = s
end

local out = {}
for i = 1, n do
  local s = st[i]
  local level = 0
  if s.ok and (all_ok or s.indep) then
    s.strikes = 0
    redis.call('HSET', KEYS[i], 'tat', f(s.new_tat))
    if s.struck then redis.call('HDEL', KEYS[i], 'strikes', 'last', 'block') end
    redis.call('PEXPIRE', KEYS[i], math.ceil((s.new_tat - now) / 1000) + 1000)
  elseif not s.ok then
    s.strikes = s.strikes + 1
    if s.after > 0 and s.strikes >= s.after then
      local penalty = s.block_ms * math.pow(2, s.strikes - s.after)
      if penalty > s.max_block_ms then penalty = s.max_block_ms end
      if now_ms + penalty > s.block then s.block = now_ms + penalty end
      if s.block - now_ms > s.retry then s.retry = s.block - now_ms end
      level = 1
    end
    if s.reject_after > 0 and s.strikes >= s.reject_after then level = 2 end
    redis.call('HSET', KEYS[i], 'strikes', f(s.strikes), 'last', f(now_ms), 'block', f(s.block))
    local ttl = s.window_ms
    local until_full = math.ceil((s.tat - now) / 1000)
    if until_full > ttl then ttl = until_full end
    if s.block - now_ms > ttl then ttl = s.block - now_ms end
    redis.call('PEXPIRE', KEYS[i], ttl + 1000)
  end
  local allowed = 0
  if s.ok then allowed = 1 end
  out[#out + 1] = allowed
  out[#out + 1] = s.retry
  out[#out + 1] = s.strikes
  out[#out + 1] = level
end
return out
