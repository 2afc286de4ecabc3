-- The invocations a group's replicas follow, each until its announcement expires (ms on Redis's
-- clock): this refreshes a replica's, drops the expired, and returns the fleet's, at most
-- ARGV[2] of them. KEYS[1]: the group's sorted set. ARGV[1]: the lifetime, ms. ARGV[2]: the most
-- returned. ARGV[3..]: the invoke ids this replica follows.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lifetime = tonumber(ARGV[1])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now + lifetime, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], lifetime)
return redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
