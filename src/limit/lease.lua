-- One replica at a time polls a group of waited invocations: this takes the group's lease when
-- nobody holds it, or renews it for the replica that does. KEYS[1]: the lease. ARGV[1]: this
-- replica. ARGV[2]: the lease's lifetime, ms. Returns 1 when this replica holds it.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
