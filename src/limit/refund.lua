-- Gives back a call `quota.lua` counted but that was not sent (the fleet rate refused it).
-- KEYS[1]: the action's counter prefix. ARGV[1]: the window in ms. Should the window have turned
-- since, the new one is credited: at most one call more in it, rather than a quota lost.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counter = KEYS[1] .. math.floor(now / tonumber(ARGV[1]))
if (tonumber(redis.call('GET', counter)) or 0) > 0 then
  redis.call('DECR', counter)
end
return 0
