-- One attempt of one action against the account's quota, in one atomic step; the same rules as
-- `quota::decide`. KEYS[1]: the action's blocked-until key. KEYS[2]: its counter, to which the
-- window's number is appended. ARGV[1]: the window in ms (0: no quota, only blocks apply).
-- ARGV[2]: the calls the window may hold for this attempt to go (the whole share for a caller,
-- less for background work). ARGV[3]: calls this replica admitted on its own in this window while
-- Redis did not answer, added to the count first. Returns {0, calls counted in the window} when admitted (and counts
-- the call), {1, ms} while ECS's throttle holds, {2, ms} when the window's share is spent.
-- Redis's own clock is used, so replicas whose clocks differ still agree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = tonumber(redis.call('GET', KEYS[1])) or 0
if blocked > now then
  return {1, blocked - now}
end
local period = tonumber(ARGV[1])
if period <= 0 then
  return {0, 0}
end
local window = math.floor(now / period)
local counter = KEYS[2] .. window
local owed = tonumber(ARGV[3])
if owed > 0 then
  redis.call('INCRBY', counter, owed)
  redis.call('PEXPIRE', counter, 2 * period)
end
local used = tonumber(redis.call('GET', counter)) or 0
if used >= tonumber(ARGV[2]) then
  return {2, (window + 1) * period - now}
end
used = redis.call('INCR', counter)
redis.call('PEXPIRE', counter, 2 * period)
return {0, used}
