-- ECS throttled an action: no replica sends it again before the time this sets; the same rule as
-- `quota::blocked_until`. KEYS[1]: the action's blocked-until key. ARGV[1]: the wait ECS asked
-- for, in ms (0: until the start of ECS's next minute). A later block already set is kept.
-- Returns the ms from now until the action opens.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local asked = tonumber(ARGV[1])
local until_ms
if asked > 0 then
  until_ms = now + asked
else
  until_ms = (math.floor(now / 60000) + 1) * 60000
end
local current = tonumber(redis.call('GET', KEYS[1])) or 0
if current >= until_ms then
  return current - now
end
redis.call('SET', KEYS[1], string.format('%.0f', until_ms), 'PX', until_ms - now)
return until_ms - now
