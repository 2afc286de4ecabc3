-- The group's poller shares what it read: KEYS[i] gets ARGV[i + 1] for ARGV[1] ms.
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
end
return #KEYS
