-- GCRA (the generic cell rate algorithm) for one bucket, in one atomic step.
-- KEYS[1]: the bucket. ARGV[1]: µs per call (1e6 / rate). ARGV[2]: the burst tolerance in µs
-- (burst × ARGV[1]). Returns 0 when the call is admitted (and takes its slot), else the µs until
-- one would be. Redis's own clock is used, so replicas whose clocks differ still agree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local next_tat = tat + interval
local wait = next_tat - tolerance - now
if wait > 0 then
  return math.ceil(wait)
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return 0
